/**
 * Finding the `memlsp` executable: the setting, the workspace's virtual environment, the Python
 * extension's selected environment, then PATH.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import { SECTION } from './settings';

export interface FoundServer {
  command: string;
  /** How it was found, for the log and the status report. */
  origin: string;
}

export class ServerNotFound extends Error {}

const IS_WINDOWS = process.platform === 'win32';
const EXE = IS_WINDOWS ? 'memlsp.exe' : 'memlsp';
const BIN = IS_WINDOWS ? 'Scripts' : 'bin';

function isExecutable(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) {
      return false;
    }
    fs.accessSync(file, IS_WINDOWS ? fs.constants.F_OK : fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function expand(value: string, folder: vscode.WorkspaceFolder | undefined): string {
  let out = value.trim();
  if (out === '~' || out.startsWith('~/')) {
    out = path.join(os.homedir(), out.slice(1));
  }
  if (folder) {
    out = out.replace(/\$\{workspaceFolder\}/g, folder.uri.fsPath);
  }
  if (!path.isAbsolute(out) && folder && /[\\/]/.test(out)) {
    out = path.join(folder.uri.fsPath, out);
  }
  return out;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) {
      return path.join(dir, name);
    }
  }
  return undefined;
}

async function withTimeout<T>(promise: Thenable<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([Promise.resolve(promise), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `memlsp` next to the interpreter the Python extension has selected, if it is installed. */
async function fromPythonExtension(folder: vscode.WorkspaceFolder | undefined): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api: any = extension.isActive ? extension.exports : await withTimeout(extension.activate(), 5000);
    const env = api?.environments?.getActiveEnvironmentPath?.(folder?.uri);
    const envPath: unknown = env?.path;
    if (typeof envPath !== 'string' || envPath === '') {
      return undefined;
    }
    const candidates =
      fs.existsSync(envPath) && fs.statSync(envPath).isDirectory()
        ? [path.join(envPath, BIN, EXE)]
        : [path.join(path.dirname(envPath), EXE)];
    return candidates.find(isExecutable);
  } catch {
    return undefined; // an old or broken Python extension: try the next place
  }
}

export async function findServer(): Promise<FoundServer> {
  const folders = vscode.workspace.workspaceFolders ?? [];
  const config = vscode.workspace.getConfiguration(SECTION, folders[0]?.uri);
  const configured = config.get<string>('serverPath', '').trim();
  if (configured !== '') {
    const command = expand(configured, folders[0]);
    if (isExecutable(command)) {
      return { command, origin: 'the memlsp.serverPath setting' };
    }
    throw new ServerNotFound(
      `memlsp.serverPath is set to "${configured}", but ${command} is not an executable file.`,
    );
  }
  // A workspace's own files decide what runs only when the user trusts the workspace.
  if (vscode.workspace.isTrusted) {
    for (const folder of folders) {
      const candidate = path.join(folder.uri.fsPath, '.venv', BIN, EXE);
      if (isExecutable(candidate)) {
        return { command: candidate, origin: `the workspace's .venv (${folder.name})` };
      }
    }
    const fromPython = await fromPythonExtension(folders[0]);
    if (fromPython) {
      return { command: fromPython, origin: "the Python extension's selected environment" };
    }
  }
  const found = onPath(EXE);
  if (found) {
    return { command: found, origin: 'PATH' };
  }
  throw new ServerNotFound(
    'The memlsp language server was not found (looked at the memlsp.serverPath setting, ' +
      "the workspace's .venv, the Python extension's environment and PATH). Install memlsp " +
      '(in its repository: ./setup.sh, which creates .venv/bin/memlsp) and set memlsp.serverPath ' +
      'to that executable, or install it into this workspace\'s .venv.',
  );
}
