#!/usr/bin/env python3
"""Writes tests/fuzz/corpus: data-plane frame headers and handshake messages,
named frame_ok_* / frame_bad_* / hs_ok_* / hs_bad_* by the verdict the decoder
must reach (payload cap 64 MiB, as in corpus_test.cpp and the fuzzer).
Layouts: runtime/net/transport/frame.cpp and auth.cpp."""
import os
import random
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MAGIC, VERSION = 0x50445254, 1
HS_MAGIC, HS_VERSION = 0x41505254, 1
F32, F64, I32, I64, U8 = 0, 1, 2, 3, 4
ESIZE = {F32: 4, F64: 8, I32: 4, I64: 8, U8: 1}


def frame(kind=1, flags=0, dtype=F32, shape=(2, 3), payload=None, magic=MAGIC, version=VERSION,
          dev_kind=0, dev_index=0, rank=None, reserved=b"\0\0\0", extents=None):
    if payload is None:
        n = 1
        for d in shape:
            n *= d
        payload = n * ESIZE.get(dtype, 1)
    ext = list(extents if extents is not None else shape) + [0] * (8 - len(extents if extents is not None else shape))
    return struct.pack("<IHBBIIQBBhB3s8qQ", magic, version, kind, flags, 7, 0, 42, dtype, dev_kind,
                       dev_index, len(shape) if rank is None else rank, reserved, *ext, payload)


def close_frame(payload=0):
    return struct.pack("<IHBBIIQBBhB3s8qQ", MAGIC, VERSION, 2, 0, 7, 0, 0, 0, 0, 0, 0, b"\0\0\0",
                       *([0] * 8), payload)


def hs(type_=1, mode=0, reason=0, name=b"alice", name_len=None, magic=HS_MAGIC, version=HS_VERSION,
       pad=b"", size=140):
    body = struct.pack("<IHBBBBH", magic, version, type_, mode, reason,
                       len(name) if name_len is None else name_len, 0)
    body += (name + pad).ljust(64, b"\0")[:64] + bytes(range(32)) + bytes(32)
    return body[:size] if size <= len(body) else body + b"\0" * (size - len(body))


def main():
    rnd = random.Random(1234)
    files = {
        # accepted frames
        "frame_ok_f32_2x3": frame(),
        "frame_ok_u8_scalar": frame(dtype=U8, shape=()),
        "frame_ok_i64_empty": frame(dtype=I64, shape=(0, 5)),
        "frame_ok_f64_rank8": frame(dtype=F64, shape=(1, 1, 1, 1, 1, 1, 1, 2)),
        "frame_ok_at_cap_64mib": frame(dtype=U8, shape=(64 << 20,)),
        "frame_ok_close": close_frame(),
        "frame_ok_trailing_bytes": frame() + b"payload follows",
        # rejected frames
        "frame_bad_empty": b"",
        "frame_bad_one_byte": b"T",
        "frame_bad_truncated_103": frame()[:103],
        "frame_bad_garbage_104": bytes(rnd.getrandbits(8) for _ in range(104)),
        "frame_bad_garbage_1000": bytes(rnd.getrandbits(8) for _ in range(1000)),
        "frame_bad_zeros_104": bytes(104),
        "frame_bad_ones_104": b"\xff" * 104,
        "frame_bad_magic": frame(magic=0xDEADBEEF),
        "frame_bad_magic_big_endian": frame(magic=0x54524450),
        "frame_bad_version_0": frame(version=0),
        "frame_bad_version_2": frame(version=2),
        "frame_bad_version_ffff": frame(version=0xFFFF),
        "frame_bad_kind_0": frame(kind=0),
        "frame_bad_kind_3": frame(kind=3),
        "frame_bad_flags": frame(flags=0x80),
        "frame_bad_reserved": frame(reserved=b"\0\1\0"),
        "frame_bad_dtype_5": frame(dtype=5, payload=24),
        "frame_bad_dtype_255": frame(dtype=255, payload=24),
        "frame_bad_device_cuda": frame(dev_kind=1),
        "frame_bad_device_index": frame(dev_index=3),
        "frame_bad_rank_9": frame(rank=9),
        "frame_bad_rank_255": frame(rank=255),
        "frame_bad_extent_beyond_rank": frame(rank=1, extents=(6, 1), payload=24),
        "frame_bad_negative_extent": frame(extents=(-2, 3), payload=0),
        "frame_bad_size_mismatch": frame(payload=25),
        "frame_bad_length_u64_max": frame(payload=2**64 - 1),
        "frame_bad_length_1tib": frame(payload=1 << 40),
        "frame_bad_consistent_1gib_over_cap": frame(dtype=F32, shape=(1 << 28,)),
        "frame_bad_shape_overflow": frame(dtype=U8, extents=(2**63 - 1, 2**63 - 1), payload=4),
        "frame_bad_close_with_payload": close_frame(payload=16),
        "frame_bad_http_request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X" * 100 + b"\r\n\r\n",
        "frame_bad_tls_client_hello": bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) + bytes(120),
        # handshake messages
        "hs_ok_hello": hs(),
        "hs_ok_response": hs(type_=3, name=b""),
        "hs_ok_reject": hs(type_=5, reason=1, name=b""),
        "hs_bad_short": hs(size=139),
        "hs_bad_long": hs(size=141),
        "hs_bad_magic": hs(magic=0x50445254),
        "hs_bad_version": hs(version=2),
        "hs_bad_type_0": hs(type_=0),
        "hs_bad_mode_7": hs(mode=7),
        "hs_bad_reason_on_hello": hs(reason=1),
        "hs_bad_name_len_65": hs(name_len=65),
        "hs_bad_name_padding": hs(name_len=3),
        "hs_bad_name_space": hs(name=b"al ice"),
        "hs_bad_empty_name_hello": hs(name=b""),
        "hs_bad_garbage": bytes(rnd.getrandbits(8) for _ in range(140)),
    }
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.remove(os.path.join(OUT, old))
    for name, data in files.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
