/**
 * Certificates for the TLS tests, made with the `openssl` command in a
 * temporary directory: a test CA, a good server certificate for `127.0.0.1`,
 * `::1` and `localhost`, an expired one, one for another name, and a second,
 * unrelated CA (for "a client without the CA").
 *
 * Every end-entity certificate has `basicConstraints=critical,CA:FALSE` and a
 * `subjectAltName`: rustls refuses a certificate without them as
 * `CaUsedAsEndEntity` or for its name. Each `openssl` run is bounded; where
 * `openssl` is missing, {@link skipWithoutOpenssl} installs Debian's package (as root), and only where
 * that fails prints a `SKIPPED:` line, so the module marks its tests ignored.
 *
 * @example
 * ```ts
 * import { makeTestCerts, skipWithoutOpenssl } from "./support/certs.ts";
 * const ignore = await skipWithoutOpenssl("the TLS server tests");
 * Deno.test({ name: "good certificate", ignore }, async () => {
 *   const certs = await makeTestCerts();
 *   // certs.server.cert, certs.server.key, certs.ca.cert ...
 * });
 * ```
 * @module
 */
import { installPackages } from "./debian.ts";
import { tempDir } from "./files.ts";

/** Longest wait for one `openssl` command. */
const OPENSSL_TIMEOUT_MS = 20_000;

/** A certificate and its key, as file paths. */
export interface CertFiles {
  /** PEM certificate file. */
  cert: string;
  /** PEM private key file (unencrypted). */
  key: string;
}

/** Everything {@link makeTestCerts} made. */
export interface TestCerts {
  /** The directory holding every file. */
  dir: string;
  /** The test CA that signed every server certificate below. */
  ca: CertFiles;
  /** A CA that signed nothing here: trusting only it fails every verification. */
  otherCa: CertFiles;
  /** Valid now, for IP 127.0.0.1, IP ::1 and DNS localhost. */
  server: CertFiles;
  /** The same names, valid only in January 2020. */
  expired: CertFiles;
  /** Valid now, for DNS other.example only. */
  otherName: CertFiles;
  /** PEM text of {@link TestCerts.ca}'s certificate. */
  caPem: string;
}

/** The `openssl version` line, or `undefined` where it cannot be run. */
function opensslVersion(): string | undefined {
  try {
    const { success, stdout } = new Deno.Command("openssl", {
      args: ["version"],
      stdout: "piped",
      stderr: "null",
    })
      .outputSync();
    return success ? new TextDecoder().decode(stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True (and a `SKIPPED:` line printed) when `openssl` cannot be run here and
 * installing Debian's package (as root, with apt-get) failed too, so the
 * caller marks `what` ignored.
 */
export async function skipWithoutOpenssl(what: string): Promise<boolean> {
  if (opensslVersion() !== undefined) return false;
  const failure = await installPackages(["openssl"]);
  if (failure === undefined && opensslVersion() !== undefined) return false;
  console.log(`SKIPPED: ${what}: the openssl command is missing and could not be installed (${failure})`);
  return true;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(OPENSSL_TIMEOUT_MS),
  }).output();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`openssl ${args[0]} failed (code ${output.code}): ${stderr}`);
  }
}

const CA_CONFIG = `[ca]
default_ca = test
[test]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
`;

async function makeCa(dir: string, name: string, subject: string): Promise<CertFiles> {
  const files = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
  await openssl(dir, [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", files.key, "-out", files.cert, "-days", "3", "-subj", subject],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  ]);
  return files;
}

/** A leaf signed by `ca` through `openssl ca`, which (unlike `openssl x509` in 3.0) sets any validity dates. */
async function makeLeaf(
  dir: string,
  ca: CertFiles,
  name: string,
  altNames: string,
  dates: [string, string],
): Promise<CertFiles> {
  const files = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
  const extensions = `${dir}/${name}.ext`;
  await Deno.writeTextFile(
    extensions,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n` +
      `extendedKeyUsage=serverAuth\nsubjectAltName=${altNames}\n`,
  );
  await openssl(dir, [
    ...["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
    ...["-keyout", files.key, "-out", `${dir}/${name}.csr`, "-subj", `/CN=${name}`],
  ]);
  await openssl(dir, [
    ...["ca", "-batch", "-notext", "-config", `${dir}/ca.cnf`, "-cert", ca.cert, "-keyfile", ca.key],
    ...["-in", `${dir}/${name}.csr`, "-out", files.cert, "-extfile", extensions],
    ...["-startdate", dates[0], "-enddate", dates[1]],
  ]);
  return files;
}

/** `openssl ca`'s date format, `YYYYMMDDHHMMSSZ`. */
function caDate(date: Date): string {
  return date.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Makes the CA and the certificates in a fresh temporary directory (removed
 * with the test module).
 *
 * @throws {Error} naming the `openssl` step that failed.
 */
export async function makeTestCerts(): Promise<TestCerts> {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/ca.cnf`, CA_CONFIG);
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(`${dir}/serial`, "1000\n");
  const ca = await makeCa(dir, "ca", "/CN=Accio Test CA");
  const otherCa = await makeCa(dir, "other-ca", "/CN=Unrelated Test CA");
  const now = Date.now();
  const valid: [string, string] = [caDate(new Date(now - 3_600_000)), caDate(new Date(now + 3 * 86_400_000))];
  const names = "IP:127.0.0.1,IP:::1,DNS:localhost";
  return {
    dir,
    ca,
    otherCa,
    server: await makeLeaf(dir, ca, "localhost", names, valid),
    expired: await makeLeaf(dir, ca, "expired", names, ["20200101000000Z", "20200102000000Z"]),
    otherName: await makeLeaf(dir, ca, "other.example", "DNS:other.example", valid),
    caPem: await Deno.readTextFile(ca.cert),
  };
}

/** Copies `from` to fresh paths a test may overwrite, as an operator renewing a certificate does. */
export async function copyCertFiles(from: CertFiles): Promise<CertFiles> {
  const dir = await tempDir();
  const files = { cert: `${dir}/cert.pem`, key: `${dir}/key.pem` };
  await Deno.copyFile(from.cert, files.cert);
  await Deno.copyFile(from.key, files.key);
  await Deno.chmod(files.key, 0o600);
  return files;
}
