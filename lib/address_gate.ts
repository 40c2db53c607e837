/**
 * `--max-per-address N` as a {@link Gate}: at most N connections at once
 * from one client address (vsftpd's `max_per_ip`), counted by the address
 * the gates before it settled on (the PROXY protocol's client, when that is
 * on). A connection beyond the limit is refused before `accio\r\n`, with no
 * number and no file; its slot comes back when the session ends.
 *
 * @example
 * ```ts
 * import { AddressLimit } from "./address_limit.ts";
 * import { addressLimitGate } from "./address_gate.ts";
 * const gates = [addressLimitGate(new AddressLimit(4))];
 * ```
 * @module
 */
import { addressKey, type AddressLimit } from "./address_limit.ts";
import { LimitError } from "./errors.ts";
import type { Arrival, Gate } from "./upload_session.ts";

/**
 * The host of a logged peer address, `host:port` or `[v6]:port`.
 *
 * @example
 * ```ts
 * import { peerHost } from "./address_gate.ts";
 * peerHost("[2001:db8::7]:5000"); // "2001:db8::7"
 * ```
 */
export function peerHost(peer: string): string {
  const bracketed = /^\[(.*)\]:\d+$/.exec(peer);
  if (bracketed) return bracketed[1];
  const colon = peer.lastIndexOf(":");
  return colon > 0 && /^\d+$/.test(peer.slice(colon + 1)) ? peer.slice(0, colon) : peer;
}

/**
 * A gate that holds one of `limit`'s slots for the connection's address
 * while its session lasts.
 *
 * @example
 * ```ts
 * import { AddressLimit } from "./address_limit.ts";
 * import { addressLimitGate } from "./address_gate.ts";
 * const gate = addressLimitGate(new AddressLimit(2));
 * ```
 */
export function addressLimitGate(limit: AddressLimit): Gate {
  return (arrival: Arrival) => {
    const host = peerHost(arrival.peer);
    const release = limit.tryAcquire(addressKey(host));
    if (release === undefined) {
      const connections = `${limit.max} connection${limit.max === 1 ? "" : "s"}`;
      throw new LimitError(`${host} already holds ${connections} (--max-per-address ${limit.max})`, {
        refusal: "address-limit",
      });
    }
    arrival.atEnd.push(release);
    return Promise.resolve();
  };
}
