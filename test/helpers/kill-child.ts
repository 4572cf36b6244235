/**
 * Runs a TypeScript child process for the SIGKILL tests: optionally armed with a failpoint
 * (`EMDB_CRASH_AT`), reporting each line it prints so the caller can kill it at a chosen
 * moment. Resolves with whether the child died of SIGKILL; rejects if it failed otherwise.
 */
import { type ChildProcess, spawn } from "node:child_process";

export function runKillableChild(
  script: string,
  args: readonly string[],
  crashAt: string | undefined,
  onLine: (line: string, child: ChildProcess) => void,
): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (crashAt !== undefined) env.EMDB_CRASH_AT = crashAt;
    else delete env.EMDB_CRASH_AT;
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let buf = "";
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        onLine(line, child);
      }
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal === "SIGKILL") resolve(true);
      else if (code === 0) resolve(false);
      else reject(new Error(`child ${script} failed (code ${code}): ${stderr}`));
    });
  });
}
