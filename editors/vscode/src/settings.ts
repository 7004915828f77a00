/**
 * The `memlsp` settings section: which keys stay in the client, and what the server gets.
 *
 * The server layers its configuration (its defaults < the user's config file < the workspace's
 * `.memlsp.yaml` < initializationOptions < `workspace/configuration`). The client's settings are
 * the top layer, so sending VS Code's *defaults* would silently override the user's own config
 * file. The server therefore gets only the values a user actually set (user, workspace or folder
 * settings), with empty strings and nulls meaning "not set here", and without the keys that only
 * the client reads.
 */
import * as vscode from 'vscode';

export const SECTION = 'memlsp';

/** Keys read by the extension itself; the server would report them as unknown. */
const CLIENT_ONLY = new Set(['serverPath', 'enabledLanguages', 'trace']);

/** Settings that need a new client (a new process or a new document selector) when changed. */
export const RESTART_KEYS = ['serverPath', 'enabledLanguages'].map((k) => `${SECTION}.${k}`);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Settings = { [key: string]: Json };

function isObject(value: unknown): value is Settings {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `over` merged onto `base`, objects key by key (a later layer wins per leaf). */
function merge(base: Settings, over: unknown): Settings {
  if (!isObject(over)) {
    return base;
  }
  const out: Settings = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const below = out[key];
    out[key] = isObject(value) && isObject(below) ? merge(below, value) : (value as Json);
  }
  return out;
}

/** Drop "not set" leaves (null, "") and the objects they leave empty. */
function prune(value: Settings): Settings {
  const out: Settings = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === null || item === '' || item === undefined) {
      continue;
    }
    if (isObject(item)) {
      const inner = prune(item);
      if (Object.keys(inner).length > 0) {
        out[key] = inner;
      }
    } else {
      out[key] = item;
    }
  }
  return out;
}

/** The settings the server should see: explicitly set values only, client-only keys removed. */
export function serverSettings(scope?: vscode.ConfigurationScope): Settings {
  const inspected = vscode.workspace.getConfiguration(undefined, scope).inspect<Settings>(SECTION);
  let set: Settings = {};
  for (const layer of [
    inspected?.globalValue,
    inspected?.workspaceValue,
    inspected?.workspaceFolderValue,
  ]) {
    set = merge(set, layer);
  }
  for (const key of CLIENT_ONLY) {
    delete set[key];
  }
  return prune(set);
}

export function enabledLanguages(): string[] {
  const config = vscode.workspace.getConfiguration(SECTION);
  let value = config.get<unknown>('enabledLanguages');
  if (!Array.isArray(value)) {
    // Not a list (a hand-edited settings.json): the default, kept once in package.json.
    value = config.inspect<unknown>('enabledLanguages')?.defaultValue;
  }
  if (!Array.isArray(value)) {
    return [];
  }
  return value.filter((v): v is string => typeof v === 'string' && v.trim() !== '');
}
