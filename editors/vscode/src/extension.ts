/**
 * memlsp for VS Code: starts `memlsp serve` (stdio) with vscode-languageclient and adds what an
 * editor needs around it: settings, a status bar item, and commands.
 *
 * Inline completions (`textDocument/inlineCompletion`), completion items, diagnostics and code
 * actions are all the language client's built-in features; accepting ghost text with Tab (and
 * word by word) is VS Code's own.
 */
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  LogMessageNotification,
  LanguageClientOptions,
  ResponseError,
  ServerCapabilities,
  ServerOptions,
  State,
  WorkspaceEdit,
} from 'vscode-languageclient/node';
import { ServerLog } from './logs';
import { findServer, FoundServer, ServerNotFound } from './server';
import { enabledLanguages, RESTART_KEYS, SECTION, serverSettings } from './settings';
import { StatusBar } from './status';

const STATUS_REQUEST = 'memlsp/status';
const REINDEX_COMMAND = 'memlsp.reindex';
const REWRITE_COMMAND = 'memlsp.rewriteSelection';
const STATUS_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

type StatusReport = Record<string, any>;

function errorText(error: unknown): string {
  if (error instanceof ResponseError || error instanceof Error) {
    return error.message;
  }
  return String(error);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** What the running server can do, in words (the status report and the log). */
export function describeFeatures(caps: ServerCapabilities, report: StatusReport | undefined): string[] {
  const commands = caps.executeCommandProvider?.commands ?? [];
  // Push diagnostics have no capability of their own: a pull provider, an explicit experimental
  // flag, or the quality agent's entry in the status report says the server reviews on save.
  const experimental: any = caps.experimental;
  const reviews = Boolean(
    caps.diagnosticProvider || experimental?.memlsp?.reviewOnSave || (report && report.quality),
  );
  const features: Array<[boolean, string]> = [
    [Boolean(caps.inlineCompletionProvider), 'inline completion'],
    [Boolean(caps.completionProvider), 'completion'],
    [reviews, 'diagnostics on save'],
    [Boolean(caps.codeActionProvider), 'code actions'],
    [commands.includes(REINDEX_COMMAND), 'reindex'],
    [commands.includes(REWRITE_COMMAND), 'rewrite selection'],
  ];
  return features.filter(([has]) => has).map(([, name]) => name);
}

/** The readable lines of the status report. */
function summarize(report: StatusReport): string[] {
  const lines: string[] = [];
  const pool = report.pool ?? {};
  const models: any[] = Array.isArray(pool.models) ? pool.models : [];
  const loaded = models
    .filter((m) => m.loaded)
    .map((m) => `${m.name} (${Math.round((m.bytes ?? 0) / 2 ** 20)} MB${m.in_use ? ', in use' : ''})`);
  lines.push(`Completion model: ${report.generator?.model ?? 'not chosen yet (on the first request)'}`);
  lines.push(`Loaded models: ${loaded.join(', ') || 'none'}`);
  if (typeof pool.budget_bytes === 'number') {
    lines.push(`Pool budget: ${Math.round(pool.budget_bytes / 2 ** 20)} MB`);
  }
  const acceptance: any[] = Array.isArray(report.acceptance) ? report.acceptance : [];
  if (acceptance.length > 0) {
    const shown = acceptance.reduce((n, row) => n + (row.shown ?? 0), 0);
    const taken = acceptance.reduce((n, row) => n + (row.accepted ?? 0) + (row.partially_accepted ?? 0), 0);
    lines.push(`Suggestions: ${shown} shown, ${taken} accepted`);
  }
  const issues: unknown[] = Array.isArray(report.config_issues) ? report.config_issues : [];
  lines.push(`Config issues: ${issues.length === 0 ? 'none' : issues.length}`);
  for (const issue of issues) {
    lines.push(`  - ${String(issue)}`);
  }
  return lines;
}

class Controller implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private server: FoundServer | undefined;
  private lastReport: StatusReport | undefined;
  private startError = '';
  private queue: Promise<void> = Promise.resolve();
  private refreshTimer: NodeJS.Timeout | undefined;
  private readonly log = vscode.window.createOutputChannel('memlsp', { log: true });
  private readonly statusChannel = vscode.window.createOutputChannel('memlsp: status');
  private readonly status = new StatusBar();

  constructor(private readonly context: vscode.ExtensionContext) {}

  /** Start, stop and restart run one at a time, in order. */
  private serialized(work: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(work, work);
    return this.queue;
  }

  start(): Promise<void> {
    return this.serialized(() => this.doStart());
  }

  stop(): Promise<void> {
    return this.serialized(() => this.doStop());
  }

  restart(): Promise<void> {
    return this.serialized(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  private async doStart(): Promise<void> {
    this.status.setState('starting');
    this.startError = '';
    try {
      this.server = await findServer();
    } catch (error) {
      this.server = undefined;
      this.startError = errorText(error);
      this.status.setState('notFound', this.startError);
      this.log.error(this.startError);
      if (error instanceof ServerNotFound) {
        void this.offerInstallHelp(this.startError);
      }
      return;
    }
    const folder = vscode.workspace.workspaceFolders?.[0];
    const serverOptions: ServerOptions = {
      command: this.server.command,
      args: ['serve'],
      options: { cwd: folder?.uri.fsPath, env: process.env },
    };
    const languages = enabledLanguages();
    this.log.info(
      `starting ${this.server.command} serve (found via ${this.server.origin}) ` +
        `for ${languages.join(', ') || 'no languages'}`,
    );
    const serverLog = new ServerLog(this.log);
    const client = new LanguageClient('memlsp', 'memlsp', serverOptions, {
      ...this.clientOptions(languages, folder),
      stdioOptions: {
        stdout: (input) => serverLog.stderr(input), // unused with the stdio transport
        stderr: serverLog.stderr,
      },
    });
    client.onNotification(LogMessageNotification.type, serverLog.logMessage);
    // Also after the client restarts a crashed server by itself.
    client.onDidChangeState((event) => {
      if (this.client !== client) {
        return;
      }
      if (event.newState === State.Stopped) {
        this.status.setState('stopped', 'The memlsp server stopped; see its log (memlsp: Show Server Log).');
      } else if (event.newState === State.Starting) {
        this.status.setState('starting');
      } else {
        this.status.setState('running');
      }
      void vscode.commands.executeCommand('setContext', 'memlsp.running', event.newState === State.Running);
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.startError = errorText(error);
      this.status.setState('stopped', `The server failed to start: ${this.startError}`);
      this.log.error(`the server failed to start: ${this.startError}`);
      // Not awaited: the start/stop queue must not wait for the user to answer.
      void vscode.window
        .showErrorMessage(`memlsp: the server failed to start (${this.startError}).`, 'Show Log')
        .then((choice) => choice === 'Show Log' && this.log.show());
      return;
    }
    this.status.setState('running');
    void vscode.commands.executeCommand('setContext', 'memlsp.running', true);
    await this.refreshStatus();
    const info = client.initializeResult?.serverInfo;
    const features = describeFeatures(client.initializeResult?.capabilities ?? {}, this.lastReport);
    this.log.info(
      `${info?.name ?? 'memlsp'} ${info?.version ?? ''} ready; features: ${features.join(', ')}`,
    );
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.lastReport = undefined;
    if (client === undefined) {
      return;
    }
    void vscode.commands.executeCommand('setContext', 'memlsp.running', false);
    try {
      await client.dispose(STOP_TIMEOUT_MS);
    } catch (error) {
      this.log.info(`stopping the server: ${errorText(error)}`);
    }
    this.status.setState('stopped', 'Stopped.');
  }

  private clientOptions(languages: string[], folder: vscode.WorkspaceFolder | undefined): LanguageClientOptions {
    const status = this.status;
    return {
      documentSelector: languages.flatMap((language) => [
        { scheme: 'file', language },
        { scheme: 'untitled', language },
      ]),
      outputChannel: this.log,
      initializationOptions: serverSettings(folder?.uri),
      // Watch the section; on a change the server is told "something changed" (settings: null)
      // and pulls the section with workspace/configuration, answered below.
      synchronize: { configurationSection: SECTION },
      middleware: {
        workspace: {
          configuration: async (params, token, next) => {
            const answers = await next(params, token);
            if (!Array.isArray(answers)) {
              return answers;
            }
            return params.items.map((item, i) => {
              const section = item.section ?? '';
              if (section !== SECTION && !section.startsWith(`${SECTION}.`)) {
                return answers[i];
              }
              const scope = item.scopeUri ? vscode.Uri.parse(item.scopeUri) : folder?.uri;
              // "memlsp.agents" and the like: the part of the filtered settings below that path.
              let value: unknown = serverSettings(scope);
              for (const key of section.split('.').slice(1)) {
                value = value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
              }
              return value ?? null;
            });
          },
          didChangeConfiguration: (_sections, next) => next(undefined),
        },
        provideInlineCompletionItems: (document, position, context, token, next) =>
          this.tracked(() => Promise.resolve(next(document, position, context, token))),
        provideCompletionItem: (document, position, context, token, next) =>
          this.tracked(() => Promise.resolve(next(document, position, context, token))),
        // Progress shows in our status bar item; the client's own window progress would say the
        // same again beside it, so it only gets the end (which releases its listener).
        handleWorkDoneProgress: (token, params, next) => {
          status.onProgress(token, params);
          if (params.kind === 'end') {
            next(token, params);
          }
        },
      },
    };
  }

  /** A request shown as "busy"; when the server goes idle, refresh the model shown. */
  private async tracked<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await this.status.track(work);
    } finally {
      if (!this.status.isBusy) {
        this.scheduleRefresh();
      }
    }
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer !== undefined) {
      clearTimeout(this.refreshTimer);
    }
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refreshStatus();
    }, 1500);
  }

  private async refreshStatus(): Promise<StatusReport | undefined> {
    const client = this.client;
    if (!client || !client.isRunning()) {
      return undefined;
    }
    try {
      const report = await withTimeout(
        client.sendRequest<StatusReport>(STATUS_REQUEST, {}),
        STATUS_TIMEOUT_MS,
        STATUS_REQUEST,
      );
      this.lastReport = report ?? undefined;
      this.status.setModel(report?.generator?.model);
      return this.lastReport;
    } catch (error) {
      this.log.warn(`${STATUS_REQUEST} failed: ${errorText(error)}`);
      return undefined;
    }
  }

  private async offerInstallHelp(message: string): Promise<void> {
    const choice = await vscode.window.showErrorMessage(`memlsp: ${message}`, 'Open Settings', 'How to Install');
    if (choice === 'Open Settings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.serverPath`);
    } else if (choice === 'How to Install') {
      const readme = vscode.Uri.joinPath(this.context.extensionUri, 'README.md');
      await vscode.commands.executeCommand('markdown.showPreview', readme);
    }
  }

  /** The running client, or undefined after telling the user why there is none. */
  private async runningClient(): Promise<LanguageClient | undefined> {
    await this.queue;
    const client = this.client;
    if (client && client.isRunning()) {
      return client;
    }
    const why = this.startError || 'the server is not running';
    const choice = await vscode.window.showErrorMessage(`memlsp: ${why}.`, 'Restart Server', 'Show Log');
    if (choice === 'Restart Server') {
      await this.restart();
    } else if (choice === 'Show Log') {
      this.log.show();
    }
    return undefined;
  }

  private serverHas(client: LanguageClient, command: string): boolean {
    return (client.initializeResult?.capabilities.executeCommandProvider?.commands ?? []).includes(command);
  }

  private notSupported(command: string, what: string): void {
    void vscode.window.showWarningMessage(
      `memlsp: this server cannot ${what} yet (it does not offer the '${command}' command). ` +
        'Update memlsp to use it.',
    );
  }

  // -- commands --------------------------------------------------------------------------

  /**
   * The status report in the "memlsp: status" channel: the full `memlsp/status` JSON first, then
   * a readable summary, last, where the channel opens (it scrolls to the end).
   */
  async showStatus(): Promise<void> {
    const report = await this.refreshStatus();
    const client = this.client;
    const lines: string[] = [];
    if (report) {
      lines.push(`Full report (${STATUS_REQUEST}):`, JSON.stringify(report, null, 2), '');
    }
    lines.push(`memlsp status (${new Date().toLocaleTimeString()})`);
    if (this.server) {
      lines.push(`Server: ${this.server.command} (found via ${this.server.origin})`);
    }
    if (!client || !client.isRunning()) {
      lines.push(`State: not running${this.startError ? ` (${this.startError})` : ''}`);
    } else {
      const caps = client.initializeResult?.capabilities ?? {};
      const info = client.initializeResult?.serverInfo;
      lines.push(`State: running, ${info?.name ?? 'memlsp'} ${info?.version ?? ''}`.trimEnd());
      // One per line: the Output view wraps long lines.
      const features = describeFeatures(caps, report);
      lines.push(`Features:${features.length === 0 ? ' none' : ''}`, ...features.map((f) => `  - ${f}`));
      lines.push(`Languages: ${enabledLanguages().join(', ')}`);
      const activity = this.status.activity();
      if (activity) {
        lines.push(`Working on: ${activity}`);
      }
      if (report) {
        lines.push(...summarize(report));
      } else {
        lines.push(`${STATUS_REQUEST} did not answer; see the log (memlsp: Show Server Log).`);
      }
    }
    const out = this.statusChannel;
    out.clear();
    out.append(lines.join('\n') + '\n');
    out.show(true);
  }

  showLog(): void {
    this.log.show();
  }

  async reindex(): Promise<void> {
    const client = await this.runningClient();
    if (!client) {
      return;
    }
    if (!this.serverHas(client, REINDEX_COMMAND)) {
      this.notSupported(REINDEX_COMMAND, 'reindex the workspace');
      return;
    }
    try {
      // Progress comes back as $/progress (the status bar shows it).
      await client.sendRequest(ExecuteCommandRequest.type, { command: REINDEX_COMMAND, arguments: [] });
      void vscode.window.setStatusBarMessage('memlsp: reindexing the workspace', 3000);
    } catch (error) {
      void vscode.window.showErrorMessage(`memlsp: reindexing failed: ${errorText(error)}`);
    }
  }

  async rewriteSelection(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.selection.isEmpty) {
      void vscode.window.showWarningMessage('memlsp: select the code to rewrite first.');
      return;
    }
    const client = await this.runningClient();
    if (!client) {
      return;
    }
    if (!this.serverHas(client, REWRITE_COMMAND)) {
      this.notSupported(REWRITE_COMMAND, 'rewrite a selection');
      return;
    }
    const document = editor.document;
    if (!enabledLanguages().includes(document.languageId)) {
      void vscode.window.showWarningMessage(
        `memlsp is not enabled for ${document.languageId} (the memlsp.enabledLanguages setting).`,
      );
      return;
    }
    const instruction = await vscode.window.showInputBox({
      title: 'memlsp: rewrite the selection',
      prompt: 'How should the selected code change?',
      placeHolder: 'e.g. handle an empty list; use pathlib; add type hints',
      ignoreFocusOut: true,
      validateInput: (value) => (value.trim() === '' ? 'Type an instruction.' : undefined),
    });
    if (!instruction) {
      return;
    }
    const range = client.code2ProtocolConverter.asRange(editor.selection);
    const args = [document.uri.toString(), range, instruction.trim()];
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'memlsp: rewriting the selection…', cancellable: true },
      async (_progress, token) => {
        try {
          const result: unknown = await this.status.track(() =>
            client.sendRequest(ExecuteCommandRequest.type, { command: REWRITE_COMMAND, arguments: args }, token),
          );
          // The server may apply the edit itself (workspace/applyEdit) or return it.
          if (result && typeof result === 'object' && ('changes' in result || 'documentChanges' in result)) {
            const edit = await client.protocol2CodeConverter.asWorkspaceEdit(result as WorkspaceEdit);
            if (!(await vscode.workspace.applyEdit(edit))) {
              void vscode.window.showWarningMessage('memlsp: the rewrite could not be applied (the file changed?).');
            }
          }
        } catch (error) {
          if (!token.isCancellationRequested) {
            void vscode.window.showErrorMessage(`memlsp: the rewrite failed: ${errorText(error)}`);
          }
        }
      },
    );
  }

  onConfigurationChanged(event: vscode.ConfigurationChangeEvent): void {
    if (RESTART_KEYS.some((key) => event.affectsConfiguration(key))) {
      this.log.info('memlsp.serverPath or memlsp.enabledLanguages changed: restarting');
      void this.restart();
    }
  }

  dispose(): void {
    if (this.refreshTimer !== undefined) {
      clearTimeout(this.refreshTimer);
    }
    this.status.dispose();
    this.statusChannel.dispose();
    this.log.dispose();
  }
}

let controller: Controller | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const ctl = new Controller(context);
  controller = ctl;
  context.subscriptions.push(
    ctl,
    vscode.commands.registerCommand('memlsp.client.restartServer', () => ctl.restart()),
    vscode.commands.registerCommand('memlsp.client.reindexWorkspace', () => ctl.reindex()),
    vscode.commands.registerCommand('memlsp.client.showStatus', () => ctl.showStatus()),
    vscode.commands.registerCommand('memlsp.client.showLog', () => ctl.showLog()),
    vscode.commands.registerCommand('memlsp.client.rewriteSelection', () => ctl.rewriteSelection()),
    vscode.workspace.onDidChangeConfiguration((event) => ctl.onConfigurationChanged(event)),
    // Trusting the workspace makes its .venv (and its memlsp.serverPath) eligible.
    vscode.workspace.onDidGrantWorkspaceTrust(() => void ctl.restart()),
  );
  void ctl.start();
}

export async function deactivate(): Promise<void> {
  const ctl = controller;
  controller = undefined;
  if (ctl) {
    await ctl.stop();
  }
}
