"""Witnessing: cosigned checkpoints, so that a log cannot show different histories.

A witness keeps, for every log it trusts, the latest checkpoint it accepted, and cosigns a
new checkpoint only if it is consistent with that one. Once it accepted size N with root R it
never cosigns anything inconsistent with (N, R): a smaller tree (rollback), another root at
size N, or a larger tree without a verifying RFC 9162 consistency proof from N (fork). The
first checkpoint it sees of a log is accepted as it is (trust on first use). This follows
https://c2sp.org/tlog-witness (the checks of ``add-checkpoint``, with files instead of HTTP)
and https://c2sp.org/tlog-cosignature (the Ed25519 ``cosignature/v1`` format):

* the signed message is ``cosignature/v1\\n``, ``time <POSIX seconds>\\n`` and the checkpoint's
  note text (including extension lines);
* the signature line is ``— <witness name> base64(key ID || 8-byte big-endian timestamp ||
  64-byte Ed25519 signature)``, with key ID ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``;
* the witness verifier key is ``<name>+<hex key ID>+<base64(0x04 || public key)>``.

The witness's private key file is an ordinary Ed25519 note key (:class:`SigningKey`, type
0x01), as Go's ``NewSignerForCosignatureV1`` (transparency-dev/formats) expects.

State directory (``otaudit witness --state DIR``)::

    DIR/witness.key            the witness signing key, mode 0600
    DIR/logs/<sha256(origin)>.json
                               a trusted log: origin, verifier key, last accepted checkpoint
    DIR/.lock                  serialises check-and-update across processes

A witness directory (``otaudit serve --witness-dir DIR``) holds ``checkpoint.<size>`` (the
signed note), ``proof.<size>`` (the consistency proof from the previous checkpoint written
there, JSON ``{"size1", "size2", "hashes"}``) and, once cosigned, ``cosigned.<size>``.

The package is split by concept:

* :mod:`otaudit.witness.cosignature`: the cosignature/v1 format, witness keys and
  :func:`open_cosigned`;
* :mod:`otaudit.witness.export`: the witness directory's files (:class:`ConsistencyProof`,
  :func:`export_checkpoint`, :func:`write_atomic`) and :class:`Refused`;
* :mod:`otaudit.witness.state`: :class:`Witness`, its state directory and the decision to
  cosign or refuse (:class:`Witnessed`: the cosigned note and the lines it left out);
* :mod:`otaudit.witness.rotation`: following the log's key rotation
  (:class:`RotationProof`, ``rotation.<size>`` beside a transition checkpoint);
* :mod:`otaudit.witness.limits`: the sizes a witness reads and accepts.
"""

from otaudit.smallfile import write_atomic
from otaudit.witness.cosignature import (
    COSIGNATURE_V1_TYPE,
    Cosigned,
    WitnessKey,
    WitnessVerifier,
    cosignature_message,
    open_cosigned,
)
from otaudit.witness.export import ConsistencyProof, Refused, export_checkpoint
from otaudit.witness.limits import MAX_NOTE_BYTES, MAX_PROOF_BYTES
from otaudit.witness.rotation import RotationProof
from otaudit.witness.state import Witness, Witnessed

__all__ = [
    "COSIGNATURE_V1_TYPE",
    "MAX_NOTE_BYTES",
    "MAX_PROOF_BYTES",
    "ConsistencyProof",
    "Cosigned",
    "Refused",
    "RotationProof",
    "Witness",
    "WitnessKey",
    "WitnessVerifier",
    "Witnessed",
    "cosignature_message",
    "export_checkpoint",
    "open_cosigned",
    "write_atomic",
]
