"""CRI PullImage (kubelet's view of containerd) without generated stubs."""

from __future__ import annotations


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field_bytes(field: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (strings, bytes, messages)."""
    return _pb_varint(field << 3 | 2) + _pb_varint(len(data)) + data


def pb_parse(data: bytes) -> dict[int, list]:
    """Decode one protobuf message: field number -> list of values (varints
    as int, length-delimited as bytes; fixed32/64 as bytes)."""
    fields: dict[int, list] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value
    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            val = varint()
        elif wire == 2:
            n = varint()
            val, i = data[i:i + n], i + n
        elif wire == 1:
            val, i = data[i:i + 8], i + 8
        elif wire == 5:
            val, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(field, []).append(val)
    return fields


def cri_pull_image(socket_path: str, image: str, timeout: float = 300) -> str:
    """CRI v1 ``ImageService/PullImage`` over containerd's gRPC socket, as
    kubelet calls it; returns ``image_ref``. The two messages are encoded by
    hand (PullImageRequest{image: ImageSpec{image: 1} = 1},
    PullImageResponse{image_ref = 1}). Needs python3-grpcio (Debian package);
    raises grpc.RpcError when containerd reports an error."""
    import grpc  # python3-grpcio; imported here so the rest stays stdlib-only
    request = pb_field_bytes(1, pb_field_bytes(1, image.encode()))
    with grpc.insecure_channel(f"unix://{socket_path}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        call = channel.unary_unary("/runtime.v1.ImageService/PullImage",
                                   request_serializer=None, response_deserializer=None)
        response = call(request, timeout=timeout)
    refs = pb_parse(response).get(1, [b""])
    return refs[0].decode()
