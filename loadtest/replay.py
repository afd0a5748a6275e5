"""A captured commit call, replayed: shared by script-cost.py (which times it) and
script-instructions.py (which counts it)."""
import re
import secrets

# A stroke tag as loadtest writes it: <conn>-<n>-<unix µs>.
TAG = re.compile(r"\b(\d+-\d+-\d{16})\b")


def resp(args):
    parts = [f"*{len(args)}\r\n".encode()]
    for x in args:
        b = x.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def stream(call, count, prefix, sha=None):
    """`count` copies of `call` as one RESP stream for `redis-cli --pipe`, each with one fresh id
    in every argument that held the captured one (a stroke's id appears in the check, the put
    and the record: redis-benchmark's __rand_int__ would draw a different number for each);
    `sha` replaces the script's."""
    tags = {t for x in call for t in TAG.findall(x)}
    out = []
    for k in range(count):
        tag = f"{prefix}-{secrets.token_hex(3)}-{k}"
        args = []
        for x in call:
            for t in tags:
                x = x.replace(t, tag)
            args.append(x)
        if sha:
            args[1] = sha
        out.append(resp(args))
    return b"".join(out)
