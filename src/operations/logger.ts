// The process's log: one pino logger, one JSON object per line on stdout (pino's `time` and
// `level`, plus `event` naming the state change and `msg`), or human lines through pino-pretty.
// Every part of the proxy logs through the Log interface defined here, once:
//   log.info('upstream_lost', `lost Redis at ${name}`, { upstream: name })
// Secrets never get out: the message and every string field go through redact() first.
import pino from 'pino';
import pretty from 'pino-pretty';
import { redact } from '../redact.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevelSetting = (typeof LOG_LEVELS)[number];
export type LogLevel = Exclude<LogLevelSetting, 'silent'>;
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export const DEFAULT_LOG_LEVEL: LogLevelSetting = 'info';
export const DEFAULT_LOG_FORMAT: LogFormat = 'json';

export type LogFields = Record<string, unknown>;
/** `event`: snake_case name of what happened (listening, upstream_lost, ...); `msg`: for humans. */
export type LogMethod = (event: string, msg: string, fields?: LogFields) => void;
export type Log = Record<LogLevel, LogMethod>;

/** What a line sink gets besides the message text: the whole entry (tests look at level, event). */
export interface LogEntry extends LogFields {
  level: LogLevel;
  event: string;
  msg: string;
}

/** startProxy's second argument: a Log, or a function given each message's text (tests). */
export type LogOutput = Log | ((line: string, entry: LogEntry) => void);

const METHODS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** Strings anywhere in the fields redacted, errors as their message (bounded depth: fields are small). */
function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return redact(value);
  if (value instanceof Error) return redact(value.message);
  if (depth > 3 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1));
  const out: LogFields = {};
  for (const [name, item] of Object.entries(value)) out[name] = redactValue(item, depth + 1);
  return out;
}

function entryOf(level: LogLevel, event: string, msg: string, fields: LogFields | undefined): LogEntry {
  return { ...(fields ? (redactValue(fields, 0) as LogFields) : {}), level, event, msg: redact(msg) };
}

/** A Log from one function that gets every entry, already redacted. */
function logFrom(write: (entry: LogEntry) => void, enabled: (level: LogLevel) => boolean = () => true): Log {
  const log = {} as Log;
  for (const level of METHODS) {
    log[level] = (event, msg, fields) => {
      if (enabled(level)) write(entryOf(level, event, msg, fields));
    };
  }
  return log;
}

export const silentLog: Log = logFrom(() => undefined, () => false);

/** The Log startProxy uses for its second argument (undefined: nothing is logged). */
export function toLog(output: LogOutput | undefined): Log {
  if (output === undefined) return silentLog;
  if (typeof output !== 'function') return output;
  return logFrom((entry) => output(entry.msg, entry));
}

export interface LoggerOptions {
  level: LogLevelSetting;
  format: LogFormat;
  /** Default: stdout. */
  destination?: NodeJS.WritableStream;
  /** Fields on every line besides the pid (a --workers worker: its index). */
  base?: LogFields;
}

/**
 * The process's pino logger. Writes are synchronous: the few lines a proxy logs must all be out
 * before process.exit (a start-up line, the last lines at SIGTERM).
 */
export function createLogger(options: LoggerOptions): Log {
  const stream =
    options.format === 'pretty'
      ? pretty({ sync: true, singleLine: true, colorize: process.stdout.isTTY === true, destination: options.destination ?? 1 })
      : (options.destination ?? pino.destination({ dest: 1, sync: true }));
  const logger = pino(
    {
      level: options.level,
      base: { pid: process.pid, ...options.base },
      // Level names rather than pino's numbers: read by people and by log pipelines alike.
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
  return logFrom(
    ({ level, msg, event, ...fields }) => logger[level]({ event, ...fields }, msg),
    (level) => logger.isLevelEnabled(level),
  );
}
