/**
 * Workload 7's certificates, made with `openssl` in the bench's directory: a
 * CA, and a server certificate for 127.0.0.1 signed by it (a leaf needs
 * `basicConstraints=critical,CA:FALSE` and a `subjectAltName`, or rustls
 * refuses it). The same files serve Accio and the openssl pair.
 *
 * @module
 */
import { Child } from "./programs.ts";

/** Where the CA's certificate and the server's certificate and key are. */
export interface BenchCerts {
  /** The CA's PEM certificate: the clients trust it. */
  ca: string;
  /** The server's PEM certificate. */
  cert: string;
  /** The server's PEM private key. */
  key: string;
}

const OPENSSL_MS = 30_000;
const P256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function openssl(args: string[]): Promise<void> {
  await using child = new Child("openssl", args, `openssl ${args[0]}`);
  const status = await child.wait(OPENSSL_MS);
  if (status.code !== 0) throw new Error(`openssl ${args[0]} failed: ${child.stderr}`);
}

/** Makes the CA and the server certificate in `dir`. */
export async function makeBenchCerts(dir: string): Promise<BenchCerts> {
  const files = { ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key` };
  const caKey = `${dir}/ca.key`;
  const csr = `${dir}/server.csr`;
  const extensions = `${dir}/server.ext`;
  await openssl([
    "req",
    "-x509",
    ...P256,
    "-keyout",
    caKey,
    "-out",
    files.ca,
    "-days",
    "2",
    "-subj",
    "/CN=bench CA",
  ]);
  await openssl(["req", ...P256, "-keyout", files.key, "-out", csr, "-subj", "/CN=127.0.0.1"]);
  await Deno.writeTextFile(extensions, "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n");
  await openssl([
    ...["x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", caKey, "-CAcreateserial"],
    ...["-days", "2", "-extfile", extensions, "-out", files.cert],
  ]);
  return files;
}
