// The built CLI (dist/cli.js) as a child process, for tests of its output and exit codes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface Cli {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the CLI with these arguments and an environment without any NOTIFYLIST_* variable. */
export function startCli(args: string[], env: Record<string, string> = {}): Cli {
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('NOTIFYLIST_')) clean[name] = value;
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...clean, ...env } });
  const cli: Cli = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
  };
  child.stdout!.on('data', (chunk: Buffer) => (cli.stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (cli.stderr += chunk.toString()));
  return cli;
}

/** Runs the CLI to its exit (with a time limit). */
export async function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 10_000): Promise<Cli & { code: number | null }> {
  const cli = startCli(args, env);
  const timer = setTimeout(() => cli.child.kill('SIGKILL'), timeoutMs);
  const { code } = await cli.exited;
  clearTimeout(timer);
  return { ...cli, code };
}

export async function stopCli(cli: Cli, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (cli.child.exitCode !== null || cli.child.signalCode !== null) return cli.child.exitCode;
  cli.child.kill(signal);
  return (await cli.exited).code;
}

/** One JSON log line of the CLI's stdout (src/operations/logger.ts). */
export interface LogLine {
  level: string;
  time: string;
  event: string;
  msg: string;
  [field: string]: unknown;
}

/** The CLI's log lines so far (stdout; each line must be a JSON object). */
export function logLines(cli: Cli): LogLine[] {
  return cli.stdout
    .split('\n')
    .slice(0, -1) // a line not ended yet (read in the middle) is not complete
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as LogLine);
}

/** The `msg` of every log line so far. */
export const logMessages = (cli: Cli): string[] => logLines(cli).map((line) => line.msg);

/** Waits for the listening line (event `listening`); returns its msg. */
export async function listeningMessage(cli: Cli): Promise<string> {
  const found = (): LogLine | undefined => logLines(cli).find((line) => line.event === 'listening');
  await waitFor(async () => found(), (line) => line !== undefined || cli.child.exitCode !== null, 10_000);
  const line = found();
  if (!line) throw new Error(`no listening line: stdout=${JSON.stringify(cli.stdout)} stderr=${JSON.stringify(cli.stderr)}`);
  return line.msg;
}

/** Waits for the listening line; returns the port it names. */
export async function listening(cli: Cli): Promise<number> {
  const msg = await listeningMessage(cli);
  const match = /^notifylist-proxy listening on 127\.0\.0\.1:(\d+), upstream redis:\/\/127\.0\.0\.1:\d+\/\d+$/.exec(msg);
  if (!match) throw new Error(`unexpected listening line: ${JSON.stringify(msg)}`);
  return Number(match[1]);
}

