#!/usr/bin/env python3
"""Which rows of a damaged input file must still be imported: an independent answer.

  good_rows.py < cases.jsonl > answers.jsonl

Each input line is {"original": PATH, "mutated": PATH}; the original is a valid file
(every row good). Each answer is {"mutated": PATH, "header": true|false, "good": [LINE,
...]}: the lines where a row starts that is exactly a row of the original, so it must be
imported whatever happened around it. The header must be the original's for any answer
to hold ("header": false: the file may be refused as a whole).

CSV goes through Python's csv module (RFC 4180 quoting, as the importer reads it) over
lines split at "\\n" only; a record counts when its fields equal an original record's.
A record that a broken quote made span lines is bad, and the lines after its first are
read again (the importer's documented recovery). Once the csv module gives up on the rest
of a file (a carriage return inside a line), nothing after that point is expected. NDJSON: a line byte-identical to an original
non-blank line is a good row; the header check is that the original's kind is still the
one most of the first 64 objects' keys say (as the importer tells the kind).
"""
import csv
import json
import sys

KIND_KEYS = [("orders", {"order_id"}), ("events", {"member_id", "kind", "sku"}), ("members", {"member_id"}), ("products", {"sku", "name"})]


def kind_of(keys):
    for kind, needs in KIND_KEYS:
        if needs <= keys:
            return kind
    return None


def lines_of(data):
    """Physical lines (split at \\n only), decoded with bad bytes kept as surrogates."""
    text = data.decode("utf-8", "surrogateescape")
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def csv_records(data, width=None):
    """(starting line, fields) of each record, until the csv module gives up. With
    `width` (the header's), a record that spans lines with another number of fields is
    what a broken quote makes: as the README promises, it is reported alone and
    reading resumes at the line after its first."""
    lines = lines_of(data)
    out, at = [], 0
    while at < len(lines):
        reader = csv.reader(iter(lines[at:]), strict=False)
        last, resume = 0, None
        while resume is None:
            try:
                rec = next(reader)
            except (StopIteration, csv.Error):
                return out
            start, last = at + last + 1, reader.line_num
            if not rec:
                continue
            if width is not None and at + last > start and len(rec) != width:
                resume = start
            else:
                out.append((start, tuple(rec)))
        at = resume
    return out


def check_csv(original, mutated):
    orig = csv_records(original)
    if not orig:
        return False, []
    header, rows = orig[0][1], {r for _, r in orig[1:]}
    first = csv_records(b"".join(l.encode("utf-8", "surrogateescape") for l in lines_of(mutated)[:1]))
    if not first or first[0] != (1, header):
        return False, []
    got = csv_records(mutated, len(header))
    return True, [line for line, rec in got[1:] if rec in rows]


def objects_kind(lines):
    votes, order = {}, []
    seen = 0
    for line in lines:
        if seen == 64:
            break
        if not line.strip():
            continue
        seen += 1
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            kind = kind_of(set(obj))
            if kind:
                if kind not in votes:
                    order.append(kind)
                votes[kind] = votes.get(kind, 0) + 1
    if not votes:
        return None
    best = max(votes.values())
    return next(k for k in order if votes[k] == best)


def check_ndjson(original, mutated):
    orig_lines = [l.rstrip("\n") for l in lines_of(original)]
    good = {l for l in orig_lines if l.strip()}
    lines = [l.rstrip("\n") for l in lines_of(mutated)]
    if objects_kind(lines) != objects_kind(orig_lines):
        return False, []
    return True, [i + 1 for i, l in enumerate(lines) if l in good]


def main():
    for case in sys.stdin:
        case = json.loads(case)
        with open(case["original"], "rb") as f:
            original = f.read()
        with open(case["mutated"], "rb") as f:
            mutated = f.read()
        check = check_ndjson if case["original"].endswith(".ndjson") else check_csv
        header, good = check(original, mutated)
        print(json.dumps({"mutated": case["mutated"], "header": header, "good": good}))


if __name__ == "__main__":
    csv.field_size_limit(1 << 30)
    main()
