/**
 * The server's store-and-forward wiring (`--forward`): the flags turned into
 * a {@link ForwardQueue}, the disk high-water gate, the numbering seed that
 * survives `--forward-delete`, and a bounded stop. The session and the store
 * know nothing of it: it plugs in through `ServerOptions.gates`,
 * `ServerOptions.numbers` and `onUpload`.
 *
 * @example
 * ```ts ignore
 * import { forwardFlags, Forwarding } from "./forwarding.ts";
 * const flags = forwardFlags({ forward: "s3://b/p", "s3-endpoint": "http://127.0.0.1:8080" });
 * const forwarding = flags && await Forwarding.prepare(flags, "/save");
 * // AccioServer.start({ ..., numbers: forwarding?.numbers, gates: forwarding?.gates }), then:
 * await forwarding?.open({ onLog: console.log, onNotice: console.error });
 * await forwarding?.start();
 * ```
 * @module
 */
import { FileError, UsageError } from "./errors.ts";
import { DEFAULT_HIGH_WATER, DiskGuard, type HighWaterMark } from "./forward_disk.ts";
import { forwardSettings, parseInstance } from "./forward_config.ts";
import type { ForwardLogEntry } from "./forward_job.ts";
import { ForwardQueue, type ForwardQueueOptions } from "./forward_queue.ts";
import { ForwardState } from "./forward_state.ts";
import { type ParsedArgs, parseIntegerOption } from "./cli.ts";
import { S3Client } from "./s3_client.ts";
import type { S3Settings } from "./s3_client.ts";
import { LocalNumbers } from "./store.ts";
import type { Gate, UploadOutcome } from "./upload_session.ts";

/** The forwarding settings from the command line. */
export interface ForwardFlags {
  /** The S3 client settings (credentials from the environment). */
  s3: S3Settings;
  /** The key prefix. */
  prefix: string;
  /** This gateway's key segment. */
  instance: string;
  /** `--forward-delete`. */
  deleteAfter: boolean;
  /** `--forward-errors`. */
  forwardErrors: boolean;
  /** The disk high-water mark. */
  mark: HighWaterMark;
}

/** How long a stop waits for the forwarder before the server exits anyway. */
export const FORWARD_STOP_MS = 5_000;

/**
 * Reads the forwarding flags; `undefined` without `--forward`.
 *
 * @example
 * ```ts ignore
 * import { forwardFlags } from "./forwarding.ts";
 * forwardFlags({}); // undefined: no forwarding
 * ```
 * @throws {UsageError} for a bad value, a forwarding flag without `--forward`, or missing credentials.
 */
export function forwardFlags(
  values: ParsedArgs["values"],
  hostname: () => string = Deno.hostname,
): ForwardFlags | undefined {
  const forward = values.forward;
  if (typeof forward !== "string") {
    const stray = ["s3-endpoint", "forward-delete", "forward-errors", "min-free"]
      .find((name) => values[name] !== undefined && values[name] !== false);
    if (stray) throw new UsageError(`--${stray} needs --forward`);
    return undefined;
  }
  const endpoint = values["s3-endpoint"];
  if (typeof endpoint !== "string") throw new UsageError("--forward needs --s3-endpoint URL");
  const { s3, prefix } = forwardSettings({ forward, endpoint });
  const instance = parseInstance(typeof values.instance === "string" ? values.instance : hostname());
  const minFree = parseIntegerOption("min-free", values["min-free"], -1, { min: 0, units: true });
  return {
    s3,
    prefix,
    instance,
    deleteAfter: Boolean(values["forward-delete"]),
    forwardErrors: Boolean(values["forward-errors"]),
    mark: minFree < 0 ? DEFAULT_HIGH_WATER : { minFreeBytes: minFree, minFreeRatio: 0 },
  };
}

/** What the forwarder reports while it runs. */
export interface ForwardHooks {
  /** One entry per forward that completed or gave up (for the upload log). */
  onLog: (entry: ForwardLogEntry) => void;
  /** Operational messages (store unreachable, recovery). */
  onNotice: (message: string) => void;
}

/** Forwarding for one server: prepared before it starts, started once it listens. */
export class Forwarding {
  /** The numbering, seeded past every number already forwarded (whose local copy may be gone). */
  readonly numbers: LocalNumbers = new LocalNumbers();
  /** The disk high-water gate: refuses a connection before a number while the disk is nearly full. */
  readonly gates: readonly Gate[];
  readonly #flags: ForwardFlags;
  readonly #fileDir: string;
  #queue?: ForwardQueue;
  #stopped = false;
  readonly #seeded = Promise.withResolvers<void>();

  private constructor(flags: ForwardFlags, fileDir: string, disk: DiskGuard) {
    this.#flags = flags;
    this.#fileDir = fileDir;
    this.#seeded.promise.catch(() => {}); // a failed start is reported by start(); the gate only refuses
    const seeded = this.#seeded.promise;
    this.gates = [async () => {
      await seeded;
      if (await disk.nearlyFull()) {
        throw new FileError(`disk nearly full under ${fileDir}`, { refusal: "disk-full" });
      }
    }];
  }

  /**
   * Checks the free space of FILE-DIR's file system can be read. Writes nothing: the forwarding
   * state is opened by {@link start}, once the server holds the directory's lock.
   *
   * @throws {FileError} when the file system cannot be read.
   */
  static async prepare(flags: ForwardFlags, fileDir: string): Promise<Forwarding> {
    return new Forwarding(flags, fileDir, await DiskGuard.open(fileDir, flags.mark));
  }

  /**
   * Opens the queue (its state directory, once the server holds the directory's lock) and seeds
   * the numbering; connections wait at the gate until then. Makes no request.
   *
   * @throws {FileError} when the forwarding state is unusable.
   */
  async open(hooks: ForwardHooks): Promise<void> {
    try {
      this.#queue = await ForwardQueue.open(this.#queueOptions(hooks));
      // With --forward-delete the highest N.file may be gone from the directory: never hand its number out again.
      this.numbers.observe(await (await ForwardState.open(this.#fileDir)).highestNumber());
      this.#seeded.resolve();
    } catch (error) {
      this.#seeded.reject(error);
      throw error;
    }
  }

  /**
   * Checks the store, then recovers and forwards in the background; an unreachable store only
   * waits. A {@link stop} meanwhile ends it quietly.
   *
   * @throws {S3Error} (wrong credentials, missing bucket) when the store refuses.
   */
  async start(): Promise<void> {
    try {
      await this.#queue?.start();
    } catch (error) {
      if (!this.#stopped) throw error;
    }
  }

  #queueOptions(hooks: ForwardHooks): ForwardQueueOptions {
    const f = this.#flags;
    return {
      fileDir: this.#fileDir,
      s3: new S3Client(f.s3),
      prefix: f.prefix,
      instance: f.instance,
      deleteAfter: f.deleteAfter,
      forwardErrors: f.forwardErrors,
      ...hooks,
    };
  }

  /** Hands an ended upload to the forwarder (it decides whether an `ERROR` one goes). */
  enqueue(outcome: UploadOutcome): void {
    this.#queue?.enqueue(outcome.file, { error: outcome.outcome === "error" });
  }

  /** The forwarder's metrics lines ("" before the start). */
  render(): string {
    return this.#queue?.metrics.render() ?? "";
  }

  /** Stops the forwarder, waiting at most {@link FORWARD_STOP_MS}: forwards cut off resume at the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise<void>((resolve) => timer = setTimeout(resolve, FORWARD_STOP_MS));
    await Promise.race([this.#queue?.stop().catch(() => {}), bound]);
    clearTimeout(timer);
  }
}
