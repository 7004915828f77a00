/**
 * The server's log in the "memlsp" output channel, once, at the right levels.
 *
 * The server logs each record to stderr ("<time> LEVEL name: message") and, from `initialize` on,
 * also as `window/logMessage` ("name: message"). The language client would show stderr lines all
 * as errors, and every record twice. Here stderr lines get their record's level (continuation
 * lines such as tracebacks keep the level of their record), and a record that arrives both ways
 * is shown once, whichever copy comes first.
 */
import * as readline from 'readline';
import type { Readable } from 'stream';
import * as vscode from 'vscode';
import { LogMessageParams, MessageType } from 'vscode-languageclient/node';

const RECORD = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$/;
const REMEMBER_MS = 30_000;

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const FROM_PYTHON: Record<string, Level> = {
  DEBUG: 'debug',
  INFO: 'info',
  WARNING: 'warn',
  ERROR: 'error',
  CRITICAL: 'error',
};

function fromMessageType(type: MessageType): Level {
  switch (type) {
    case MessageType.Error:
      return 'error';
    case MessageType.Warning:
      return 'warn';
    case MessageType.Info:
      return 'info';
    default:
      return 'debug';
  }
}

export class ServerLog {
  /** First lines seen from one source, waiting for their copy from the other. */
  private readonly fromStderr = new Map<string, number>();
  private readonly fromClient = new Map<string, number>();

  constructor(private readonly channel: vscode.LogOutputChannel) {}

  /** For `stdioOptions.stderr`. */
  readonly stderr = (input: Readable): void => {
    let level: Level = 'info';
    let skipping = false; // the continuation lines of a record already shown via logMessage
    const lines = readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 });
    lines.on('line', (line: string) => {
      const record = RECORD.exec(line);
      if (record) {
        level = FROM_PYTHON[record[1]] ?? 'info';
        const message = record[2];
        skipping = this.seenFrom(this.fromClient, message);
        if (!skipping) {
          this.remember(this.fromStderr, message);
          this.write(level, message);
        }
      } else if (!skipping) {
        if (line.startsWith('Traceback (most recent call last)')) {
          level = 'error';
        }
        this.write(level, line);
      }
    });
  };

  /** For `window/logMessage`. */
  readonly logMessage = (params: LogMessageParams): void => {
    const [first] = params.message.split('\n', 1);
    if (this.seenFrom(this.fromStderr, first)) {
      return;
    }
    this.remember(this.fromClient, first);
    this.write(fromMessageType(params.type), params.message);
  };

  private write(level: Level, message: string): void {
    this.channel[level](message);
  }

  private remember(seen: Map<string, number>, text: string): void {
    const now = Date.now();
    seen.delete(text); // re-inserted last: the map stays in time order
    seen.set(text, now);
    for (const [key, at] of seen) {
      if (now - at <= REMEMBER_MS) {
        break; // insertion order: the rest are newer
      }
      seen.delete(key);
    }
  }

  private seenFrom(seen: Map<string, number>, text: string): boolean {
    const at = seen.get(text);
    if (at === undefined || Date.now() - at > REMEMBER_MS) {
      return false;
    }
    seen.delete(text);
    return true;
  }
}
