/**
 * The status bar item: starting / ready / busy / indexing / stopped, and the model in use.
 * A click runs `memlsp.showStatus`.
 */
import * as vscode from 'vscode';

export type ServerState = 'starting' | 'running' | 'stopped' | 'notFound';

interface Indexing {
  title: string;
  message?: string;
  percentage?: number;
}

/** Show "busy" only for requests that take a while: no flicker on cache hits. */
const BUSY_DELAY_MS = 250;

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private state: ServerState = 'starting';
  private detail = '';
  private model = '';
  private inFlight = 0;
  private busyTimer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly progress = new Map<string, Indexing>();

  constructor() {
    this.item = vscode.window.createStatusBarItem('status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'memlsp';
    this.item.command = 'memlsp.client.showStatus';
    this.render();
    this.item.show();
  }

  setState(state: ServerState, detail = ''): void {
    this.state = state;
    this.detail = detail;
    if (state !== 'running') {
      this.progress.clear();
      this.inFlight = 0;
      this.setBusy(false);
    }
    this.render();
  }

  setModel(model: string | undefined): void {
    if (model && model !== this.model) {
      this.model = model;
      this.render();
    }
  }

  /** Wraps a request: busy while it runs (after a short delay). */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.inFlight += 1;
    if (this.inFlight === 1 && this.busyTimer === undefined) {
      this.busyTimer = setTimeout(() => {
        this.busyTimer = undefined;
        if (this.inFlight > 0) {
          this.setBusy(true);
        }
      }, BUSY_DELAY_MS);
    }
    try {
      return await work();
    } finally {
      this.inFlight = Math.max(0, this.inFlight - 1);
      if (this.inFlight === 0) {
        if (this.busyTimer !== undefined) {
          clearTimeout(this.busyTimer);
          this.busyTimer = undefined;
        }
        this.setBusy(false);
      }
    }
  }

  get isBusy(): boolean {
    return this.inFlight > 0;
  }

  /** A `$/progress` work-done notification from the server (indexing, reviews, rewrites). */
  onProgress(token: string | number, value: { kind: string; title?: string; message?: string; percentage?: number }): void {
    const key = String(token);
    if (value.kind === 'begin') {
      // "memlsp: indexing workspace" reads "Indexing workspace" beside our own "memlsp:".
      const title = (value.title ?? '').replace(/^memlsp\b:?\s*/i, '') || 'working';
      const shown = title.charAt(0).toUpperCase() + title.slice(1);
      this.progress.set(key, { title: shown, message: value.message, percentage: value.percentage });
    } else if (value.kind === 'report') {
      const current = this.progress.get(key);
      if (current) {
        current.message = value.message ?? current.message;
        current.percentage = value.percentage ?? current.percentage;
      }
    } else if (value.kind === 'end') {
      this.progress.delete(key);
    }
    this.render();
  }

  /** The work in progress, in words (empty when there is none). */
  activity(): string {
    return Array.from(this.progress.values())
      .map((p) => `${p.title}${p.percentage !== undefined ? ` ${Math.round(p.percentage)}%` : ''}${p.message ? ` (${p.message})` : ''}`)
      .join('; ');
  }

  private setBusy(busy: boolean): void {
    if (busy !== this.busy) {
      this.busy = busy;
      this.render();
    }
  }

  private render(): void {
    const model = this.model ? ` · ${this.model}` : '';
    const tooltip = new vscode.MarkdownString(undefined, true);
    tooltip.appendMarkdown('**memlsp** — local AI code assistance\n\n');
    this.item.backgroundColor = undefined;
    const [first] = this.progress.values();
    if (this.state === 'running' && first) {
      const pct = first.percentage !== undefined ? ` ${Math.round(first.percentage)}%` : '';
      this.item.text = `$(sync~spin) memlsp: ${first.title}${pct}`;
      const withModel = this.model ? `, model ${this.model}` : '';
      this.item.accessibilityInformation = { label: `memlsp: working: ${first.title}${pct}${withModel}` };
      tooltip.appendText(`${first.title}${pct}${first.message ? ` — ${first.message}` : ''}\n\n`);
    } else if (this.state === 'running') {
      this.item.text = this.busy ? `$(loading~spin) memlsp${model}` : `$(sparkle) memlsp${model}`;
      const what = this.busy ? 'busy' : 'ready';
      this.item.accessibilityInformation = { label: `memlsp: ${what}${this.model ? `, model ${this.model}` : ''}` };
      tooltip.appendText(`${this.busy ? 'Working' : 'Ready'}${this.model ? ` — model ${this.model}` : ''}\n\n`);
    } else if (this.state === 'starting') {
      this.item.text = '$(loading~spin) memlsp';
      this.item.accessibilityInformation = { label: 'memlsp: starting' };
      tooltip.appendText('Starting the language server…\n\n');
    } else {
      this.item.text = '$(error) memlsp';
      this.item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
      const what = this.state === 'notFound' ? 'server not found' : 'stopped';
      this.item.accessibilityInformation = { label: `memlsp: ${what}` };
      tooltip.appendText(`${this.detail || what}\n\n`);
    }
    tooltip.appendMarkdown('Click to show the status.');
    this.item.tooltip = tooltip;
  }

  dispose(): void {
    if (this.busyTimer !== undefined) {
      clearTimeout(this.busyTimer);
    }
    this.item.dispose();
  }
}
