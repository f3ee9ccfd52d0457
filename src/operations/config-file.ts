// --config <file>: settings in redis.conf syntax, one `name value` per line, where name is a flag's
// name without `--` (`port 6390`, `upstream "redis://:secret@10.0.0.5"`, `log-level debug`).
// Lines whose first non-blank character is `#` are comments, as in redis.conf (a `#` after a value
// is not). Values are split and unquoted as Redis splits config lines (sdssplitargs in
// src/sds.c): "..." with \n \r \t \b \a \\ \" \xHH escapes, '...' with \' only, a closing quote
// followed by a blank or the end. Errors name the file and line and never echo a value (the file
// may hold the upstream password).
import { readFileSync, statSync } from 'node:fs';

/** A setting's value and where it was read (for errors about its value). */
export interface FileSetting {
  value: string;
  line: number;
}

/** Larger is not a config file (and is not read into memory). */
const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export class ConfigFileError extends Error {}

const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', b: '\b', a: '\x07' };

/** One line's words, as sdssplitargs splits them; null: unbalanced quotes. */
export function splitConfigLine(line: string): string[] | null {
  const words: string[] = [];
  let i = 0;
  for (;;) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) return words;
    let word = '';
    let quote: '"' | "'" | null = null;
    for (;;) {
      const c = line[i];
      if (quote === '"') {
        if (c === undefined) return null;
        if (c === '\\' && line[i + 1] === 'x' && /^[0-9a-f]{2}$/i.test(line.slice(i + 2, i + 4))) {
          word += String.fromCharCode(parseInt(line.slice(i + 2, i + 4), 16));
          i += 3;
        } else if (c === '\\' && i + 1 < line.length) {
          const next = line[++i];
          word += ESCAPES[next] ?? next;
        } else if (c === '"') {
          // The closing quote must be followed by a blank or the end.
          if (i + 1 < line.length && !/\s/.test(line[i + 1])) return null;
          i++;
          break;
        } else {
          word += c;
        }
      } else if (quote === "'") {
        if (c === undefined) return null;
        if (c === '\\' && line[i + 1] === "'") {
          word += "'";
          i++;
        } else if (c === "'") {
          if (i + 1 < line.length && !/\s/.test(line[i + 1])) return null;
          i++;
          break;
        } else {
          word += c;
        }
      } else {
        if (c === undefined || /\s/.test(c)) break;
        if (c === '"' || c === "'") quote = c;
        else word += c;
      }
      i++;
    }
    words.push(word);
  }
}

/**
 * Reads the file's settings (a later line for the same name wins, as in redis.conf).
 * `known`: the setting names; `switches`: those whose value may be left out (yes).
 */
export function readConfigFile(path: string, known: ReadonlySet<string>, switches: ReadonlySet<string>): Map<string, FileSetting> {
  let text: string;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new ConfigFileError(`${path}: not a regular file`);
    if (stat.size > MAX_CONFIG_FILE_BYTES) throw new ConfigFileError(`${path}: larger than ${MAX_CONFIG_FILE_BYTES} bytes; not a config file`);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof ConfigFileError) throw error;
    throw new ConfigFileError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const settings = new Map<string, FileSetting>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const where = `${path}:${line}`;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const words = splitConfigLine(trimmed);
    if (words === null) throw new ConfigFileError(`${where}: unbalanced quotes`);
    // (Names are printed only if they look like one: the line may be a stray password.)
    const name = words[0].toLowerCase();
    const shown = /^[a-z][a-z0-9-]{0,40}$/.test(name) ? `'${name}'` : 'name';
    if (name === 'config') throw new ConfigFileError(`${where}: 'config' cannot be set in a config file`);
    if (!known.has(name)) throw new ConfigFileError(`${where}: unknown setting ${shown} (see --help)`);
    if (words.length === 1 && switches.has(name)) words.push('yes');
    if (words.length === 1) throw new ConfigFileError(`${where}: setting ${shown} needs a value`);
    if (words.length > 2) throw new ConfigFileError(`${where}: setting ${shown} takes one value, got ${words.length - 1} (quote a value with blanks in it)`);
    settings.set(name, { value: words[1], line });
  });
  return settings;
}
