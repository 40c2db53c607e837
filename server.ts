/**
 * `server <PORT> <FILE-DIR>`: receive uploads concurrently and save each as
 * `<FILE-DIR>/<N>.file`.
 *
 * @module
 */
import {
  parseChoiceOption,
  type ParsedArgs,
  parseIntegerOption,
  parseSecondsOption,
  runCommand,
  SERVER_HANDSHAKE_OPTION,
  SERVER_TIMEOUT_OPTION,
} from "./lib/cli.ts";
import { DEFAULT_TIMEOUT_MS } from "./lib/deadline.ts";
import { ConnectionError, describeError, FileError, UsageError } from "./lib/errors.ts";
import { parseInstance } from "./lib/forward_config.ts";
import { LineWriter } from "./lib/log.ts";
import { Metrics, type MetricsServer, type MetricsSource, serveMetrics } from "./lib/metrics.ts";
import { UploadLog } from "./lib/upload_log.ts";
import { forwardFlags, Forwarding } from "./lib/forwarding.ts";
import { formatAddress } from "./lib/listen.ts";
import { parsePort } from "./lib/port.ts";
import { proxyProtocolGate } from "./lib/proxy_gate.ts";
import { addressLimitGate } from "./lib/address_gate.ts";
import { AddressLimit } from "./lib/address_limit.ts";
import type { Gate } from "./lib/upload_session.ts";
import { DEFAULT_MAX_HEADER_BYTES } from "./lib/handshake.ts";
import {
  AccioServer,
  DEFAULT_MAX_CONNECTIONS,
  type Refusal,
  type ServerOptions,
  type UploadOutcome,
} from "./lib/server.ts";
import {
  DEFAULT_RESUME_MAX_BYTES,
  DEFAULT_RESUME_MAX_COUNT,
  DEFAULT_RESUME_WINDOW_MS,
} from "./lib/resume_store.ts";
import { onStopSignals, surviveFileSizeLimit, surviveUncaughtErrors } from "./lib/signals.ts";
import { onReloadSignal, type Reloadable } from "./lib/reload.ts";
import { AuthLockout } from "./lib/auth_lockout.ts";
import { tokenGate } from "./lib/token_gate.ts";
import { TokenFile } from "./lib/tokens.ts";
import { checkWorkerOptions, MAX_WORKERS, parseWorkersOption, WorkerPool } from "./lib/worker_pool.ts";
import { runServerWorker, type WorkerSettings } from "./lib/server_worker.ts";
import { isServerWorker, type OptionValues } from "./lib/worker_protocol.ts";
import { parseTlsFiles, serverTls, TLS_OPTIONS } from "./lib/tls_options.ts";

/** One server in this thread, or several workers (`--workers N`). */
type Serving = AccioServer | WorkerPool;

const spec = {
  name: "server",
  usage: "server [options] <PORT> <FILE-DIR>",
  summary: "Accio server: listens on PORT on every interface and saves the upload of the N-th " +
    "connection as FILE-DIR/N.file (after the highest N already there). An upload that stalls, " +
    "breaks or is cut off is saved as the 5 bytes ERROR.",
  positionals: ["PORT", "FILE-DIR"],
  options: {
    timeout: SERVER_TIMEOUT_OPTION,
    handshake: SERVER_HANDSHAKE_OPTION,
    "max-connections": {
      type: "string",
      valueName: "N",
      help: `uploads served at once; more wait in the backlog (default ${DEFAULT_MAX_CONNECTIONS})`,
    },
    "max-per-address": {
      type: "string",
      valueName: "N",
      help: "connections at once from one client address (the PROXY header's with --proxy-protocol); " +
        "more are refused before accio (default: no limit)",
    },
    "max-size": { type: "string", valueName: "BYTES", help: "largest upload, e.g. 4G (default: no limit)" },
    "max-header": {
      type: "string",
      valueName: "BYTES",
      help: `largest double-handshake header (default ${DEFAULT_MAX_HEADER_BYTES})`,
    },
    headers: { type: "boolean", help: "accept header extensions (length, sha256) and answer with a receipt" },
    names: { type: "boolean", help: "also accept the name header: store uploads at client-chosen paths" },
    "proxy-protocol": {
      type: "boolean",
      help: "every connection begins with a PROXY protocol v1/v2 header (behind HAProxy): " +
        "only the balancer may reach the port",
    },
    resumable: {
      type: "boolean",
      help: "keep broken named, verified uploads for the client's --resume (implies --names)",
    },
    "resume-window": {
      type: "string",
      valueName: "SECONDS",
      help: "how long a broken upload's data is kept for resuming (default 86400, a day)",
    },
    "resume-max-count": {
      type: "string",
      valueName: "N",
      help: `most broken uploads kept at once (default ${DEFAULT_RESUME_MAX_COUNT})`,
    },
    "resume-max-bytes": {
      type: "string",
      valueName: "BYTES",
      help: "most bytes kept for resuming, e.g. 20G (default 8G)",
    },
    ...TLS_OPTIONS,
    log: { type: "string", valueName: "FILE", help: "append one JSON line per connection to FILE" },
    instance: {
      type: "string",
      valueName: "ID",
      help: "this gateway's name: store in FILE-DIR/ID/ (created if missing), one numbering per instance; " +
        "with --forward also the key segment (default there: the host name)",
    },
    "metrics-port": { type: "string", valueName: "PORT", help: "serve Prometheus metrics on this port" },
    "metrics-host": {
      type: "string",
      valueName: "HOST",
      help: "address for the metrics (default 127.0.0.1)",
    },
    workers: {
      type: "string",
      valueName: "N|auto",
      help: `workers in this process on the same port (auto: one per CPU; at most ${MAX_WORKERS}; default 1)`,
    },
    tokens: {
      type: "string",
      valueName: "FILE",
      help: "only clients with a token of FILE (identity:<sha256 of the token> lines) get a number; " +
        "their named uploads go under FILE-DIR/<identity>/ (reloaded on SIGHUP)",
    },
    "allow-plaintext-tokens": {
      type: "boolean",
      help: "accept --tokens without TLS: every token then crosses the network readable",
    },
    quiet: { type: "boolean", help: "log nothing but fatal errors" },
    verbose: { type: "boolean", help: "log every upload, not only failed ones" },
    forward: {
      type: "string",
      valueName: "s3://BUCKET/PREFIX",
      help: "also copy each saved upload to PREFIX/<instance>/<path> in the bucket (credentials from AWS_*)",
    },
    "s3-endpoint": { type: "string", valueName: "URL", help: "the S3 endpoint, addressed path-style" },
    "forward-delete": { type: "boolean", help: "remove the local copy once the object is verified" },
    "forward-errors": { type: "boolean", help: "forward ERROR uploads too" },
    "min-free": {
      type: "string",
      valueName: "BYTES",
      help: "with --forward, refuse new connections below this much free disk (default: 1G or 5 %)",
    },
  },
} as const;

// Log lines are timestamped for a supervisor's journal, and can neither throw nor block (see lib/log.ts).
const stderr = new LineWriter(Deno.stderr, { timestamps: true });

/** `--resumable` and its bounds. */
function resumeOptions(values: Record<string, string | boolean | undefined>) {
  const count = parseIntegerOption("resume-max-count", values["resume-max-count"], DEFAULT_RESUME_MAX_COUNT);
  const bytes = parseIntegerOption("resume-max-bytes", values["resume-max-bytes"], DEFAULT_RESUME_MAX_BYTES, {
    min: 0,
    units: true,
  });
  return {
    resumable: Boolean(values.resumable),
    resumeWindowMs: parseSecondsOption("resume-window", values["resume-window"], DEFAULT_RESUME_WINDOW_MS),
    resumeMaxCount: count,
    resumeMaxBytes: bytes,
  };
}

/** A worker's settings, from the same option values as the main thread's (see lib/server_worker.ts). */
async function workerSettings(values: OptionValues): Promise<WorkerSettings> {
  const settings = serverSettings(values);
  const files = parseTlsFiles(values);
  if (files === undefined) return settings;
  // A node:tls context lives in one isolate: each worker loads its own (the main thread logged what it is).
  const tls = await serverTls(files, { timeoutMs: settings.idleTimeoutMs!, log: () => {} });
  const gates = admissionOrder(settings.gates ?? [], [], tls.gate, []);
  return { ...settings, gates, reloadables: [tls.reloadable] };
}

/** The settings of each serving thread (the one server, or every worker) from the command line. */
function serverSettings(values: OptionValues): Partial<ServerOptions> {
  // With an upload log, each stored file's SHA-256 is recorded.
  return { ...limits(values), ...resumeOptions(values), hashUploads: typeof values.log === "string" };
}

/** Each refusal before a number, counted in metrics by its label. */
function countRefusals(metrics: Metrics | undefined): (refusal: Refusal) => void {
  return (refusal) => metrics?.recordRefusal(refusal.kind);
}

/** With workers, SIGHUP reads the certificate in the main thread first: only a good one reaches the workers. */
function reloadInWorkers(reloadable: Reloadable, started: { server?: Serving }): Reloadable {
  return {
    what: reloadable.what,
    reload: async () => {
      const summary = await reloadable.reload();
      if (started.server instanceof WorkerPool) started.server.reload();
      return `${summary} (the workers read it again)`;
    },
  };
}

if (isServerWorker()) {
  runServerWorker(workerSettings);
} else {
  await runCommand(spec, Deno.args, async (parsed) => {
    try {
      return await serve(parsed);
    } finally {
      await stderr.flush(1_000);
    }
  });
}

async function serve({ positionals: [portText, fileDir], values }: ParsedArgs): Promise<number> {
  const port = parsePort(portText);
  const directory = await instanceDirectory(fileDir, values.instance);
  const metricsPort = optionalPort(values["metrics-port"]);
  const flags = forwardFlags(values);
  const workers = checkWorkerOptions(parseWorkersOption(values.workers), values);
  const tlsFiles = parseTlsFiles(values);
  const log = values.quiet ? () => {} : (line: string) => stderr.write(`server: ${line}`);
  surviveUncaughtErrors(log);
  const started: { server?: Serving } = {};
  installStopSignals(started, log);
  // What SIGHUP reads again (the TLS certificate, the tokens); installed now, so a SIGHUP never stops the server.
  const reloadables: Reloadable[] = [];
  onReloadSignal(reloadables, log);
  const uploadLog = typeof values.log === "string" ? await UploadLog.open(values.log) : undefined;
  const forwarding = flags && await Forwarding.prepare(flags, directory);
  const metrics = metricsPort === undefined
    ? undefined
    : new Metrics(() => started.server?.activeConnections ?? 0);
  const settings = serverSettings(values);
  const access = { forwarding, tlsFiles, workers, started, reloadables, log };
  const gates = await accessGates(values, settings, access);
  const onUpload = reporter(log, Boolean(values.verbose), metrics, uploadLog, forwarding);
  const server = started.server = workers > 1
    ? await startWorkers(workers, values, port, directory, log, onUpload, metrics)
    : await startOne({ port, directory, settings, log, onUpload, metrics, forwarding, gates });
  const metricsServer = metrics &&
    await startMetrics(server, metricsSource(metrics, forwarding, server), metricsPort!, values, log);
  const forwarded = forwarding && await startForwarding(forwarding, server, log, uploadLog);
  logListening(server, directory, log);
  surviveFileSizeLimit();
  await server.finished;
  await forwarding?.stop();
  await metricsServer?.close();
  await uploadLog?.close();
  const failure = await forwarded?.refused;
  if (failure) throw failure;
  return 0;
}

/** What {@link accessGates} needs besides the options. */
interface AccessContext {
  forwarding: Forwarding | undefined;
  tlsFiles: ReturnType<typeof parseTlsFiles>;
  workers: number;
  started: { server?: Serving };
  reloadables: Reloadable[];
  log: (line: string) => void;
}

/** Every gate in its order, TLS and tokens included; what SIGHUP reloads goes into `reloadables`. */
async function accessGates(
  values: ParsedArgs["values"],
  settings: Partial<ServerOptions>,
  { forwarding, tlsFiles, workers, started, reloadables, log }: AccessContext,
): Promise<Gate[]> {
  const tls = tlsFiles && await serverTls(tlsFiles, { timeoutMs: settings.idleTimeoutMs!, log });
  if (tls) reloadables.push(workers > 1 ? reloadInWorkers(tls.reloadable, started) : tls.reloadable);
  const tokens = await tokenAccess(values, settings, reloadables, log);
  return admissionOrder(settings.gates ?? [], forwarding?.gates ?? [], tls?.gate, tokens);
}

/** One scrape: the server's counters, the forwarder's, and with workers each worker's. */
function metricsSource(metrics: Metrics, forwarding: Forwarding | undefined, server: Serving): MetricsSource {
  const pool = server instanceof WorkerPool ? server : undefined;
  return { render: () => metrics.render() + (forwarding?.render() ?? "") + (pool?.render() ?? "") };
}

/** What one server in this thread is started with (see {@link startOne}). */
interface OneServer {
  port: number;
  directory: string;
  settings: Partial<ServerOptions>;
  log: (line: string) => void;
  onUpload: (outcome: UploadOutcome) => void;
  metrics: Metrics | undefined;
  forwarding: Forwarding | undefined;
  gates: Gate[];
}

/** `--workers 1`: the server runs in this thread. */
function startOne(o: OneServer): Promise<AccioServer> {
  return AccioServer.start({
    port: o.port,
    directory: o.directory,
    ...o.settings,
    numbers: o.forwarding?.numbers,
    gates: o.gates,
    onLog: o.log,
    onUpload: o.onUpload,
    onRefused: countRefusals(o.metrics),
  });
}

/**
 * The gates in the order they run. The balancer's header comes first: every later gate then sees
 * the real client; the cheap checks come before the TLS handshake, so a connection they refuse
 * costs none; the token gate greets, inside TLS: it comes last.
 */
function admissionOrder(
  cheap: readonly Gate[],
  disk: readonly Gate[],
  tls: Gate | undefined,
  tokens: readonly Gate[],
): Gate[] {
  return [...cheap, ...disk, ...(tls ? [tls] : []), ...tokens];
}

/**
 * Opens the forwarder (stopping the server if its state is unusable), then checks the store while
 * uploads are already accepted (an unreachable store only waits); `refused` settles to the store's
 * refusal (wrong credentials, no bucket), after which the server stops.
 */
/**
 * Stops on SIGINT/SIGTERM: draining the server once `started` holds it, else at once. Installed before the
 * directory is opened: a stop during the start-up repair (kill-safe) exits 0 at once.
 */
function installStopSignals(started: { server?: Serving }, log: (line: string) => void): void {
  onStopSignals({
    graceful: () => started.server ? drain(started.server, log) : stopDuringStart(log),
    immediate: () => started.server ? started.server.close() : stopDuringStart(log),
  });
}

/** A port option's value, if given. */
function optionalPort(value: string | boolean | undefined): number | undefined {
  return value === undefined ? undefined : parsePort(String(value));
}

/** The start-up line: where the server listens, and the first number it hands out. */
function logListening(server: Serving, directory: string, log: (line: string) => void): void {
  log(
    `listening on ${formatAddress(server.addr)}, saving to ${directory} from ${
      server.directory.lastId + 1
    }.file`,
  );
}

async function startForwarding(
  forwarding: Forwarding,
  server: Serving,
  log: (line: string) => void,
  uploadLog: UploadLog | undefined,
): Promise<{ refused: Promise<unknown> }> {
  try {
    await forwarding.open({
      onLog: (entry) => void uploadLog?.append(entry).then((failure) => failure && log(failure)),
      onNotice: log,
    });
  } catch (error) {
    await server.close();
    throw error;
  }
  const refused = forwarding.start().then(() => undefined, async (error) => {
    await server.close();
    return error;
  });
  return { refused };
}

/** SIGQUIT once serving: stop accepting, finish what is in flight. */
function drain(server: Serving, log: (line: string) => void): void {
  log(`stopping: no new connections, finishing ${server.activeConnections} in flight`);
  server.shutdown();
}

/** A stop before the server listens: every step of the start may be cut off, so exit now. */
function stopDuringStart(log: (line: string) => void): void {
  log("stopped during start-up");
  stderr.flush(1_000).finally(() => Deno.exit(0));
}

/** FILE-DIR, or with `--instance ID` its sub-directory ID (made here; FILE-DIR itself must exist). */
async function instanceDirectory(fileDir: string, instance: unknown): Promise<string> {
  if (typeof instance !== "string") return fileDir;
  const directory = `${fileDir.replace(/\/+$/, "")}/${parseInstance(instance)}`;
  try {
    await Deno.mkdir(directory, { mode: 0o750 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      throw new FileError(`cannot create "${directory}": ${describeError(error)}`, { cause: error });
    }
  }
  return directory;
}

/** The gates before a number, in order: the balancer's header first, so later ones see the real client. */
function admissionGates(values: ParsedArgs["values"], idleTimeoutMs: number): Gate[] {
  const gates: Gate[] = [];
  if (values["proxy-protocol"]) gates.push(proxyProtocolGate({ timeoutMs: idleTimeoutMs }));
  if (values["max-per-address"] !== undefined) {
    const max = parseIntegerOption("max-per-address", values["max-per-address"], 0, { min: 1 });
    gates.push(addressLimitGate(new AddressLimit(max)));
  }
  return gates;
}

/**
 * `--tokens FILE`: the token gate, and its file among what SIGHUP reloads.
 * Refused over plaintext unless the operator says so, and with a single handshake (it carries no token).
 */
async function tokenAccess(
  values: ParsedArgs["values"],
  settings: Partial<ServerOptions>,
  reloadables: Reloadable[],
  log: (line: string) => void,
): Promise<Gate[]> {
  if (typeof values.tokens !== "string") return [];
  if (values["tls-cert"] === undefined && !values["allow-plaintext-tokens"]) {
    throw new UsageError(
      "--tokens without --tls-cert would let anyone on the network read every token: add --tls-cert and " +
        "--tls-key, or --allow-plaintext-tokens (a private network, a balancer that terminates TLS)",
    );
  }
  if (settings.handshake === "single") {
    throw new UsageError(
      "--tokens needs the double handshake (a token is a header line): drop --handshake single",
    );
  }
  const tokens = await TokenFile.load(values.tokens);
  const summary = (table: TokenFile["table"]) =>
    `${table.identities().length} identities, ${table.size} tokens`;
  reloadables.push({ what: "tokens", reload: async () => summary(await tokens.reload()) });
  log(`tokens from ${tokens.path}: ${summary(tokens.table)}`);
  return [tokenGate({
    tokens,
    lockout: new AuthLockout(),
    timeoutMs: settings.idleTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    handshake: settings.handshake ?? "auto",
    maxHeaderBytes: settings.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
  })];
}

/** The per-connection settings from the command line. */
function limits(values: ParsedArgs["values"]): Partial<ServerOptions> {
  const idleTimeoutMs = parseSecondsOption("timeout", values.timeout, DEFAULT_TIMEOUT_MS);
  return {
    idleTimeoutMs,
    gates: admissionGates(values, idleTimeoutMs),
    handshake: parseChoiceOption("handshake", values.handshake, ["auto", "single", "double"], "auto"),
    maxConnections: parseIntegerOption("max-connections", values["max-connections"], DEFAULT_MAX_CONNECTIONS),
    maxUploadBytes: parseIntegerOption("max-size", values["max-size"], Infinity, { min: 0, units: true }),
    maxHeaderBytes: parseIntegerOption("max-header", values["max-header"], DEFAULT_MAX_HEADER_BYTES, {
      min: 64,
      units: true,
    }),
    allowHeaders: Boolean(values.headers),
    allowNames: Boolean(values.names),
  };
}

/** `--workers N` above 1: the workers run this module too, and call {@link workerSettings}. */
function startWorkers(
  count: number,
  values: OptionValues,
  port: number,
  directory: string,
  log: (line: string) => void,
  onUpload: (outcome: UploadOutcome) => void,
  metrics: Metrics | undefined,
): Promise<WorkerPool> {
  const maxConnections = limits(values).maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const script = new URL(import.meta.url);
  const onRefused = countRefusals(metrics);
  return WorkerPool.start({
    script,
    count,
    port,
    directory,
    values,
    maxConnections,
    onLog: log,
    onUpload,
    onRefused,
  });
}

/** What happens as each upload ends: the stderr line, the metrics, the upload log. */
function reporter(
  log: (line: string) => void,
  verbose: boolean,
  metrics: Metrics | undefined,
  uploadLog: UploadLog | undefined,
  forwarding: Forwarding | undefined,
): (outcome: UploadOutcome & { worker?: number }) => void {
  return (u) => {
    forwarding?.enqueue(u);
    const who = `${u.file} from ${u.peer}${u.identity === undefined ? "" : ` as ${u.identity}`}`;
    if (u.outcome === "error") log(`${who}: ERROR: ${u.reason}`);
    else if (verbose) {
      log(`${who}: saved ${u.bytes} bytes${u.reason ? ` (${u.reason})` : ""}`);
    }
    metrics?.record(u.outcome, u.received, u.durationMs);
    uploadLog?.append({
      id: u.id,
      peer: u.peer,
      file: u.file,
      name: u.name ?? null,
      identity: u.identity ?? null,
      bytes: u.bytes,
      sha256: u.sha256 ?? null,
      start: u.startedAt.toISOString(),
      durationMs: u.durationMs,
      outcome: u.outcome,
      reason: u.reason ?? null,
      ...(u.worker === undefined ? {} : { worker: u.worker }),
    }).then((failure) => failure && log(failure));
  };
}

/** Starts the metrics responder; if it cannot bind, stops the server and says why. */
async function startMetrics(
  server: Serving,
  metrics: MetricsSource,
  port: number,
  values: ParsedArgs["values"],
  log: (line: string) => void,
): Promise<MetricsServer> {
  const hostname = typeof values["metrics-host"] === "string" ? values["metrics-host"] : "127.0.0.1";
  try {
    const metricsServer = serveMetrics(metrics, { port, hostname, onLog: (m) => log(`metrics: ${m}`) });
    log(`metrics on http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}/metrics`);
    return metricsServer;
  } catch (error) {
    await server.close();
    throw new ConnectionError(`cannot serve metrics on ${hostname}:${port}: ${describeError(error)}`);
  }
}
