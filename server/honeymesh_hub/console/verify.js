// Checks a publisher's DSSE signature in the browser (WebCrypto Ed25519), so a
// reviewer need not trust the hub's word: the public key's SHA-256 must be the
// keyid (lowercase hex), and the signature must hold over
// PAE(payloadType, payload bytes) = "DSSEv1" SP len(type) SP type SP len(body) SP body,
// lengths in bytes, in ASCII decimal (PROTOCOL.md section 6).
const encoder = new TextEncoder();

// Standard base64, or the URL-safe alphabet (both are accepted on the wire).
export function b64decode(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = standard + "=".repeat((4 - (standard.length % 4)) % 4);
  const raw = atob(padded);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export function pae(payloadType, payload) {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head, 0);
  out.set(payload, head.length);
  return out;
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The signal's JSON as the envelope carries it, or null when it does not decode.
// Shown for every signal; only a verified one is the publisher's word.
export function decodePayload(envelope) {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(b64decode(envelope.payload)));
  } catch (err) {
    return null;
  }
}

// Whether this browser can check Ed25519 at all (WebCrypto needs a secure context:
// HTTPS, or the loopback address).
let supported = null;
export function ed25519Supported() {
  if (supported === null) {
    supported = (async () => {
      if (!globalThis.crypto || !crypto.subtle) return false;
      try {
        await crypto.subtle.importKey("raw", new Uint8Array(32), { name: "Ed25519" }, false, ["verify"]);
        return true;
      } catch (err) {
        return err.name !== "NotSupportedError";
      }
    })();
  }
  return supported;
}

// {result: "verified"} | {result: "failed", why} | {result: "unsupported", why}.
export async function verifySignal(signal) {
  if (!(await ed25519Supported())) {
    return { result: "unsupported", why: "this browser has no WebCrypto Ed25519" };
  }
  let envelope, publicKey, sig, payload;
  try {
    envelope = signal.envelope;
    publicKey = b64decode(signal.public_key);
    if (envelope.signatures.length !== 1) {
      return { result: "failed", why: "the envelope does not carry exactly one signature" };
    }
    sig = b64decode(envelope.signatures[0].sig);
    payload = b64decode(envelope.payload);
  } catch (err) {
    return { result: "failed", why: "malformed envelope" };
  }
  if (publicKey.length !== 32) return { result: "failed", why: "the public key is not 32 bytes" };
  const keyid = await sha256Hex(publicKey);
  if (keyid !== signal.keyid || envelope.signatures[0].keyid !== keyid) {
    return { result: "failed", why: "the key is not the keyid's" };
  }
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, sig, pae(envelope.payloadType, payload));
    return ok ? { result: "verified" } : { result: "failed", why: "bad signature" };
  } catch (err) {
    return { result: "failed", why: "the key or signature does not decode" };
  }
}
