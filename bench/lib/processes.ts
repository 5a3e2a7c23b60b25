import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

type Cleanup = () => void | Promise<void>;
const cleanups: Cleanup[] = [];
const children = new Set<ChildProcess>();

/** Registers work to undo when the benchmark ends, however it ends (last registered runs first). */
export function onCleanup(cleanup: Cleanup): () => Promise<void> {
  cleanups.push(cleanup);
  return async () => {
    const i = cleanups.indexOf(cleanup);
    if (i >= 0) {
      cleanups.splice(i, 1);
      await cleanup();
    }
  };
}

export async function cleanUpAll(): Promise<void> {
  while (cleanups.length) {
    const cleanup = cleanups.pop();
    try {
      await cleanup?.();
    } catch (error) {
      process.stderr.write(`bench: cleanup failed: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
}

// Last resort on a hard exit: children must never outlive the benchmark.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * CPU pinning plan: with two or more CPUs and `taskset`, the load generator (this process) runs on CPU 0
 * and each server under test on CPU 1, so a server never shares its core with autocannon and both
 * servers get the same conditions. `null` when pinning is off or impossible.
 */
export interface Pinning {
  loadCpu: number;
  serverCpu: number;
}

export function planPinning(enabled: boolean): Pinning | null {
  if (!enabled || availableParallelism() < 2 || process.platform !== 'linux' || !hasTaskset()) return null;
  return { loadCpu: 0, serverCpu: 1 };
}

/** Pins every thread of this process to one CPU (see {@link Pinning}). */
export function pinSelf(cpu: number): void {
  execFileSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { stdio: 'ignore' });
}

export function unpinSelf(): void {
  execFileSync('taskset', ['-a', '-cp', `0-${availableParallelism() - 1}`, String(process.pid)], { stdio: 'ignore' });
}

export interface Server {
  url: string;
  child: ChildProcess;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Node arguments: the script and its arguments. */
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Finds the server's URL in a line of its standard output. */
  urlPattern: RegExp;
  pinCpu?: number | null;
  timeoutMs?: number;
}

/** Starts a Node server as a child process and resolves once it prints the URL it listens on. */
export function startServer({ args, env, cwd, urlPattern, pinCpu = null, timeoutMs = 30_000 }: StartOptions): Promise<Server> {
  const [command, argv] = pinCpu === null ? [process.execPath, args] : ['taskset', ['-c', String(pinCpu), process.execPath, ...args]];
  const child = spawn(command, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(
    () => children.delete(child),
    () => {},
  );

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  const unregister = onCleanup(stop);

  return new Promise<Server>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`server did not start within ${timeoutMs} ms`)), timeoutMs);
    function fail(error: Error) {
      clearTimeout(timer);
      void unregister().finally(() => reject(new Error(`${error.message}\n--- server output ---\n${output.slice(-4000)}`)));
    }
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    // Only the tail is kept: enough to explain a failed start, bounded if a server logs a lot.
    child.stderr?.on('data', (chunk: string) => {
      output = (output + chunk).slice(-8_000);
    });
    child.stdout?.on('data', (chunk: string) => {
      output = (output + chunk).slice(-8_000);
      const match = urlPattern.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({ url: match[1], child, stop: unregister });
      }
    });
    child.once('exit', (code, signal) => fail(new Error(`server exited early (code ${code}, signal ${signal})`)));
    child.once('error', (error) => fail(error));
  });
}

let clockTicks: number | null | undefined;

/**
 * CPU time (user + system, ms) a process has used so far, from /proc; `null` where there is no /proc.
 * Divided by the requests it served, it gives CPU per request: a figure the machine's other load moves
 * much less than requests per second.
 */
export function cpuTimeMs(pid: number | undefined): number | null {
  if (pid === undefined || process.platform !== 'linux') return null;
  try {
    if (clockTicks === undefined) clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || null;
    if (clockTicks === null) return null;
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) / clockTicks) * 1000;
  } catch {
    return null;
  }
}
