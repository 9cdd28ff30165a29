// otaudit console: "Verify in this browser".
//
// This script checks, with nothing but the browser's own WebCrypto, that one record the
// console shows is really in the ledger the log's key signed. It trusts the server for
// nothing: the server sends bytes and hashes, and the verdict depends only on them and on
// the verifier key the user pinned in the console's settings (localStorage).
//
//   1. the pinned verifier key `<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 key)>`
//      (c2sp.org/signed-note), its key id recomputed as SHA-256(name || "\n" || 0x01 || key)[:4];
//   2. GET /console/api/proof/<seq>: the record's sealed bytes (base64), its RFC 9162
//      inclusion proof (hex hashes) and the signed checkpoint of the tree it is proven in;
//   3. the leaf hash SHA-256(0x00 || sealed bytes) (RFC 9162 §2.1.1);
//   4. the checkpoint (c2sp.org/tlog-checkpoint): origin, decimal tree size, base64 root hash;
//   5. the proof walked from the leaf to a root (RFC 9162 §2.1.3.2), which must equal the
//      checkpoint's root hash;
//   6. the checkpoint's Ed25519 signature by the pinned key;
//   7. the sealed bytes read as an otaudit record (JSON with a "record" member).
//
// Each step becomes an <li class="ok"> or <li class="bad"> in #verify-steps; the first bad
// step stops the check. #verify-verdict ends with class "ok" and "Verified ..." only when
// every step passed; any mismatch, malformed input or exception gives class "bad" and
// "NOT verified: <reason>". Its data-ms attribute holds the milliseconds the check took.
//
// The Python counterparts are otaudit.merkle (root_from_inclusion_proof), otaudit.note
// (parse_note, open_note), otaudit.keys (VerifierKey) and otaudit.checkpoint.

"use strict";

(() => {
  const PINNED_KEY_STORAGE = "otaudit.verifierKey";
  const ED25519_SIGNATURE_TYPE = 0x01;
  const HASH_SIZE = 32;
  const SIG_PREFIX = "\u2014 "; // EM DASH, SPACE: a signed note's signature line
  const MAX_SIGNATURES = 100;

  /** A failed check: its message is the reason shown in the verdict. */
  class VerificationError extends Error {}

  const fail = (message) => {
    throw new VerificationError(message);
  };

  // ------------------------------------------------------------------------------------------
  // Bytes, hex, base64 and SHA-256

  const utf8 = new TextEncoder();

  /** The concatenation of byte arrays (Uint8Array or plain arrays of numbers). */
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function bytesEqual(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** Lower-case hex of exactly `size` bytes, or a VerificationError naming `what`. */
  function fromHex(text, size, what) {
    if (typeof text !== "string" || !new RegExp(`^[0-9a-f]{${2 * size}}$`).test(text)) {
      fail(`${what} must be ${size} bytes of lower-case hex`);
    }
    const out = new Uint8Array(size);
    for (let i = 0; i < size; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
    return out;
  }

  function toBase64(bytes) {
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  /** Strict standard base64 (RFC 4648 §4): padded and canonical, as otaudit.note's
   *  b64decode_strict; anything else is a VerificationError naming `what`. */
  function fromBase64(text, what) {
    if (typeof text !== "string" || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
      fail(`${what} must be standard padded base64`);
    }
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    if (toBase64(out) !== text) fail(`${what} must be canonical base64`);
    return out;
  }

  async function sha256(...parts) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
  }

  /** RFC 9162 §2.1.1: a leaf hash is SHA-256(0x00 || data). */
  const leafHash = (data) => sha256([0x00], data);

  /** RFC 9162 §2.1.1: an interior node hash is SHA-256(0x01 || left || right). */
  const nodeHash = (left, right) => sha256([0x01], left, right);

  /** Text that may be (part of) a signed note: no control characters but newline, no lone
   *  UTF-16 surrogates (they have no UTF-8 form), as otaudit.note's text_problem. */
  function checkNoteText(text, what) {
    if (/[\x00-\x09\x0b-\x1f]/.test(text)) fail(`${what} holds a control character`);
    if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)) {
      fail(`${what} is not valid Unicode`);
    }
  }

  /** A signed-note key name: not empty, no whitespace, no '+', no control characters. */
  function checkKeyName(name, what) {
    if (!name) fail(`${what} has an empty key name`);
    if (/[\s+\x00-\x1f\x7f]/u.test(name)) fail(`${what} has an invalid key name`);
    checkNoteText(name, what);
  }

  // ------------------------------------------------------------------------------------------
  // The pinned verifier key (otaudit.keys.VerifierKey, c2sp.org/signed-note)

  /** The key id of a signed-note key: SHA-256(name || 0x0A || type || public key)[:4]. */
  async function noteKeyId(name, keyType, publicKey) {
    return (await sha256(utf8.encode(name), [0x0a, keyType], publicKey)).slice(0, 4);
  }

  /** Parse `<name>+<8 hex key id>+<base64(0x01 || 32-byte key)>` and check its key id.
   *  Returns {name, keyId, publicKey, text}. */
  async function parseVerifierKey(text) {
    if (typeof text !== "string" || !text.trim()) {
      fail("no verifier key is pinned (pin the log's key in Settings)");
    }
    text = text.trim();
    // The name holds no '+' and the id is hex, but base64 may hold '+': split twice only.
    const first = text.indexOf("+");
    const second = first < 0 ? -1 : text.indexOf("+", first + 1);
    if (second < 0) fail("the pinned verifier key is not <name>+<hex id>+<base64 key>");
    const name = text.slice(0, first);
    const idHex = text.slice(first + 1, second);
    const keyB64 = text.slice(second + 1);
    checkKeyName(name, "the pinned verifier key");
    const keyId = fromHex(idHex, 4, "the pinned verifier key's id");
    const raw = fromBase64(keyB64, "the pinned verifier key's data");
    if (raw.length !== 33 || raw[0] !== ED25519_SIGNATURE_TYPE) {
      fail("the pinned verifier key is not an Ed25519 key (0x01 and 32 bytes)");
    }
    const publicKey = raw.slice(1);
    const computed = await noteKeyId(name, ED25519_SIGNATURE_TYPE, publicKey);
    if (!bytesEqual(computed, keyId)) {
      fail(`the pinned verifier key's id ${idHex} does not match its name and key ` +
           `(they give ${toHex(computed)})`);
    }
    return { name, keyId, publicKey, text };
  }

  // ------------------------------------------------------------------------------------------
  // Signed notes and checkpoints (otaudit.note.parse_note, otaudit.checkpoint)

  /** Split a signed note into its text (what was signed, with its final newline) and its
   *  signature lines [{name, keyId, signature}], checking their form only. */
  function parseNote(note) {
    if (typeof note !== "string") fail("the checkpoint is not text");
    checkNoteText(note, "the checkpoint");
    if (!note.endsWith("\n")) fail("the checkpoint does not end with a newline");
    const split = note.lastIndexOf("\n\n");
    if (split < 0) fail("the checkpoint has no blank line before its signatures");
    const text = note.slice(0, split + 1);
    const block = note.slice(split + 2);
    if (!block) fail("the checkpoint has no signature line");
    const lines = block.slice(0, -1).split("\n");
    if (lines.length > MAX_SIGNATURES) fail("the checkpoint has too many signature lines");
    const signatures = lines.map((line) => {
      if (!line.startsWith(SIG_PREFIX)) fail("the checkpoint has a malformed signature line");
      const fields = line.slice(SIG_PREFIX.length).split(" ");
      if (fields.length !== 2) fail("the checkpoint has a malformed signature line");
      const [name, sigB64] = fields;
      checkKeyName(name, "a checkpoint signature line");
      const raw = fromBase64(sigB64, "a checkpoint signature");
      if (raw.length < 5) fail("a checkpoint signature is too short");
      return { name, keyId: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return { text, signatures };
  }

  /** The checkpoint body (c2sp.org/tlog-checkpoint): origin, decimal tree size, base64 root
   *  hash, then optional extension lines. Returns {origin, treeSize (BigInt), rootHash}. */
  function parseCheckpoint(text) {
    const lines = text.slice(0, -1).split("\n"); // text ends with its newline
    if (lines.length < 3) fail("the checkpoint body has fewer than three lines");
    const [origin, sizeText, rootB64] = lines;
    if (!origin) fail("the checkpoint has an empty origin");
    if (!/^(?:0|[1-9][0-9]{0,19})$/.test(sizeText)) fail("the checkpoint's tree size is not decimal");
    const treeSize = BigInt(sizeText);
    if (treeSize > 2n ** 64n - 1n) fail("the checkpoint's tree size is out of range");
    const rootHash = fromBase64(rootB64, "the checkpoint's root hash");
    if (rootHash.length !== HASH_SIZE) fail("the checkpoint's root hash is not 32 bytes");
    if (lines.slice(3).some((line) => !line)) fail("the checkpoint has an empty extension line");
    return { origin, treeSize, rootHash };
  }

  /** Check the note's signature(s) by `key` with WebCrypto Ed25519, as otaudit.note.open_note:
   *  lines of other keys are ignored, at least one line must be the key's (same name and key
   *  id) and every such line must verify. */
  async function checkSignature(note, key) {
    const mine = note.signatures.filter(
      (s) => s.name === key.name && bytesEqual(s.keyId, key.keyId),
    );
    if (!mine.length) {
      const found = note.signatures.map((s) => `${s.name}+${toHex(s.keyId)}`).join(", ");
      fail(`the checkpoint is not signed by the pinned key ${key.name}+${toHex(key.keyId)} ` +
           `(signed by ${found})`);
    }
    let publicKey;
    try {
      publicKey = await crypto.subtle.importKey(
        "raw", key.publicKey, { name: "Ed25519" }, false, ["verify"],
      );
    } catch (err) {
      fail(`this browser cannot check Ed25519 signatures (${err && err.message})`);
    }
    const data = utf8.encode(note.text);
    for (const s of mine) {
      if (s.signature.length !== 64) fail("the checkpoint's signature is not 64 bytes");
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, s.signature, data);
      if (ok !== true) fail("the checkpoint's signature does not verify with the pinned key");
    }
    return mine.length;
  }

  // ------------------------------------------------------------------------------------------
  // RFC 9162 inclusion proofs (otaudit.merkle.root_from_inclusion_proof)

  /** The number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves:
   *  one per level of the recursive split of RFC 9162 §2.1.3.1 (k = the largest power of two
   *  smaller than the range's length). BigInt arithmetic throughout. */
  function inclusionProofLength(index, size) {
    let begin = 0n;
    let end = size;
    let length = 0;
    while (end - begin > 1n) {
      let k = 1n;
      while (k * 2n < end - begin) k *= 2n;
      if (index < begin + k) end = begin + k;
      else begin += k;
      length++;
    }
    return length;
  }

  /** The root implied by an inclusion proof, RFC 9162 §2.1.3.2 steps 1-4 (the caller compares
   *  it with the signed root). `index` and `size` are BigInts, `proof` 32-byte arrays.
   *
   *  fn is the leaf's index and sn the last index at the current level; at each level, the
   *  proof hash p is a left sibling when fn is odd or when fn == sn (the node is the last
   *  one of its level: on the tree's right border it has no right sibling, so it climbs,
   *  unchanged, to the level where it is a right child). */
  async function rootFromInclusionProof(leaf, index, size, proof) {
    if (!(index >= 0n && index < size)) fail(`leaf ${index} is not in a tree of ${size}`);
    const expected = inclusionProofLength(index, size);
    if (proof.length !== expected) {
      fail(`the inclusion proof has ${proof.length} hashes; leaf ${index} of a tree of ` +
           `${size} needs ${expected}`);
    }
    let fn = index;
    let sn = size - 1n;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0n) fail("the inclusion proof is longer than the tree is deep");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        // If LSB(fn) was clear (fn == sn, an even last node): shift until it is set or 0.
        while (fn !== 0n && (fn & 1n) === 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) fail("the inclusion proof is shorter than the tree is deep");
    return r;
  }

  // ------------------------------------------------------------------------------------------
  // The proof response

  /** Check the shape of /console/api/proof/<seq>'s JSON and decode it. */
  function readProof(body, seq) {
    if (body === null || typeof body !== "object") fail("the proof response is not an object");
    if (body.seq !== Number(seq)) fail(`the proof response is for seq ${body.seq}, not ${seq}`);
    if (!Number.isSafeInteger(body.tree_size) || body.tree_size < 1) {
      fail("the proof response has no valid tree_size");
    }
    if (!Array.isArray(body.hashes)) fail("the proof response has no hashes");
    if (typeof body.checkpoint !== "string") fail("the proof response has no checkpoint");
    return {
      treeSize: BigInt(body.tree_size),
      sealed: fromBase64(body.leaf_input_b64, "the record's sealed bytes"),
      hashes: body.hashes.map((h, i) => fromHex(h, HASH_SIZE, `proof hash ${i}`)),
      checkpoint: body.checkpoint,
    };
  }

  /** GET the proof of `seq`, same origin, never cached. */
  async function fetchProof(seq) {
    const response = await fetch(`/console/api/proof/${encodeURIComponent(seq)}`, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    let body;
    try {
      body = await response.json();
    } catch {
      fail(`the proof request answered ${response.status} without JSON`);
    }
    if (!response.ok) {
      const why = body && typeof body.error === "string" ? body.error : "no reason given";
      fail(`the proof request answered ${response.status}: ${why}`);
    }
    return body;
  }

  // ------------------------------------------------------------------------------------------
  // The page

  function readPinnedKey() {
    try {
      return window.localStorage.getItem(PINNED_KEY_STORAGE);
    } catch {
      fail("this browser's storage is unavailable, so no verifier key can be pinned");
    }
  }

  /** Run every step for record `seq`, appending one <li> per step to `steps`. Throws the
   *  first failure (already shown as a bad step); returns the verdict's text. */
  async function verifyRecord(seq, steps) {
    const step = async (label, check) => {
      const li = document.createElement("li");
      try {
        const detail = await check();
        li.className = "ok";
        li.textContent = detail ? `${label}: ${detail}` : label;
        steps.append(li);
      } catch (err) {
        const reason = err instanceof VerificationError ? err.message : `error: ${err}`;
        li.className = "bad";
        li.textContent = `${label}: ${reason}`;
        steps.append(li);
        throw err instanceof VerificationError ? err : new VerificationError(reason);
      }
    };
    if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
      // Browsers give WebCrypto to HTTPS pages and to http://localhost / 127.0.0.1 only.
      fail("this page is not a secure context (HTTPS or loopback), so WebCrypto is unavailable");
    }
    if (!/^(?:0|[1-9][0-9]{0,15})$/.test(seq)) fail(`not a record number: ${seq}`);
    const index = BigInt(seq);

    let key, proof, leaf, checkpoint, note, root;
    await step("Pinned verifier key", async () => {
      key = await parseVerifierKey(readPinnedKey());
      return `${key.name}+${toHex(key.keyId)}`;
    });
    await step("Proof fetched from the server", async () => {
      proof = readProof(await fetchProof(seq), seq);
      return `${proof.hashes.length} hashes, tree of ${proof.treeSize} records`;
    });
    await step("Leaf hash SHA-256(0x00 || sealed bytes)", async () => {
      leaf = await leafHash(proof.sealed);
      return `${toHex(leaf)} (${proof.sealed.length} bytes)`;
    });
    await step("Checkpoint read", async () => {
      note = parseNote(proof.checkpoint);
      checkpoint = parseCheckpoint(note.text);
      if (checkpoint.treeSize !== proof.treeSize) {
        fail(`it is of tree size ${checkpoint.treeSize}, the proof of ${proof.treeSize}`);
      }
      if (!(checkpoint.treeSize > index)) {
        fail(`its tree of ${checkpoint.treeSize} records does not hold record ${seq}`);
      }
      return `${checkpoint.origin}, ${checkpoint.treeSize} records, ` +
             `root ${toHex(checkpoint.rootHash)}`;
    });
    await step("Inclusion proof walked to the checkpoint's root (RFC 9162)", async () => {
      root = await rootFromInclusionProof(leaf, index, checkpoint.treeSize, proof.hashes);
      if (!bytesEqual(root, checkpoint.rootHash)) {
        fail(`the proof leads to ${toHex(root)}, the checkpoint's root is ` +
             `${toHex(checkpoint.rootHash)}`);
      }
      return toHex(root);
    });
    await step("Checkpoint signature (Ed25519)", async () => {
      await checkSignature(note, key);
      return `signed by the pinned key ${key.name}+${toHex(key.keyId)}`;
    });
    await step("Sealed bytes are an otaudit record", async () => {
      let sealed;
      try {
        sealed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(proof.sealed));
      } catch {
        fail("they are not UTF-8 JSON");
      }
      const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
      if (!isObject(sealed) || !isObject(sealed.record)) fail("they hold no record");
      return typeof sealed.pipeline === "string" ? `pipeline ${sealed.pipeline}` : "";
    });
    return `Verified: record ${seq} is leaf ${seq} of the tree of ${checkpoint.treeSize} ` +
           `records whose checkpoint ${key.name}+${toHex(key.keyId)} signed`;
  }

  let running = false;

  async function onVerify(button) {
    if (running) return;
    running = true;
    button.disabled = true;
    const steps = document.getElementById("verify-steps");
    const verdict = document.getElementById("verify-verdict");
    steps.replaceChildren();
    verdict.className = "";
    verdict.textContent = "Verifying…";
    verdict.removeAttribute("data-ms");
    const started = performance.now();
    let ok = false;
    let text;
    try {
      text = await verifyRecord(button.dataset.seq ?? "", steps);
      ok = text.startsWith("Verified");
    } catch (err) {
      const reason = err instanceof VerificationError ? err.message : `error: ${err}`;
      text = `NOT verified: ${reason}`;
    } finally {
      const ms = performance.now() - started;
      if (!ok && !(text ?? "").startsWith("NOT verified")) text = "NOT verified: the check stopped";
      verdict.className = ok ? "ok" : "bad";
      verdict.textContent = text;
      verdict.dataset.ms = ms.toFixed(1);
      button.disabled = false;
      running = false;
    }
  }

  function init() {
    const button = document.getElementById("verify");
    if (!button) return;
    button.addEventListener("click", () => {
      onVerify(button);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
