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

/** Waits for the listening line; returns the port it names. */
export async function listening(cli: Cli): Promise<number> {
  const line = await waitFor(
    async () => cli.stdout,
    (out) => out.includes('\n') || cli.child.exitCode !== null,
    10_000,
  );
  const match = /^notifylist-proxy listening on 127\.0\.0\.1:(\d+), upstream redis:\/\/127\.0\.0\.1:\d+\/\d+\n$/.exec(line);
  if (!match) throw new Error(`no listening line: stdout=${JSON.stringify(cli.stdout)} stderr=${JSON.stringify(cli.stderr)}`);
  return Number(match[1]);
}

