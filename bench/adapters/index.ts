/**
 * Loads an adapter by engine name. Each adapter imports its package statically, so a
 * package that is missing or fails to load (a native binary that did not build) surfaces
 * here as a rejected import, which the suite reports as "skipped" with the reason.
 */
import type { EngineModule, EngineName } from "../engine.js";

const LOADERS: Record<EngineName, () => Promise<{ engine: EngineModule }>> = {
  emdb: () => import("./emdb.js"),
  lmdb: () => import("./lmdb.js"),
  "classic-level": () => import("./classic-level.js"),
  sqlite: () => import("./sqlite.js"),
  map: () => import("./map.js"),
};

export type Loaded = { ok: true; module: EngineModule } | { ok: false; reason: string };

export async function loadEngine(name: EngineName): Promise<Loaded> {
  try {
    const { engine } = await LOADERS[name]();
    return { ok: true, module: engine };
  } catch (err) {
    const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return { ok: false, reason: reason.split("\n")[0]! };
  }
}
