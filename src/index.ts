/**
 * emdb: an embedded, durable key-value database for Node.js.
 * Everything a user needs is exported from here.
 */
export type { MigrationProgress, MigrationReport } from "../migrations/migrate.js";
export {
  EmdbBuilder,
  type EmdbConfig,
  type ProgressListener,
  type ProgressPhase,
} from "./builder.js";
export { Emdb, type EmdbStats, type RangeOptions } from "./emdb.js";
export { EmdbError, type EmdbErrorCode, ERROR_CODES, isEmdbError } from "./errors.js";
export { everyN, FlushPolicy, manual, onEachWrite } from "./flush-policy.js";
export { Focus } from "./focus.js";
export { type Key, MAX_KEY_SIZE, MAX_VALUE_SIZE, type Value } from "./keys.js";
export { Transaction } from "./transaction.js";
export { type Clock, Ttl } from "./ttl/ttl.js";
