"""RWTH-PHOENIX-Weather 2014 scoring conventions: hypothesis cleaning, corpus/STM/CTM files, WER.

Two conventions exist, and they give slightly different numbers:

OFFICIAL (the default): the corpus's evaluation kit (phoenix2014-release/evaluation:
  evaluatePhoenix2014.sh -> preprocess.sh -> mergectmstm.py -> sclite). Hypotheses are written
  as a CTM file, ONE GLOSS PER LINE, the sed/perl rules of preprocess.sh clean each line, and
  sclite scores them against the STM references as given (dev and test references are already
  clean; they keep __ON__ and __OFF__, which count). Because every CTM line holds a single
  gloss, the rules that look across glosses (join spelled letters with "+", "WIE AUSSEHEN",
  collapse a repeated gloss) never fire in the official pipeline; only the per-gloss rules do.
  The references show the same thing: the test STM keeps "S H VOR POMMERN" and the dev STM
  "MOEGLICH MOEGLICH", which whole-sentence cleaning would turn into errors.

PYTHON PORT ("clean both", `clean_references=True`): the port in signjoey
  (neccam/slt, signjoey/phoenix_utils/phoenix_cleanup.py, `clean_phoenix_2014`) applies the
  same rules to the whole sentence string, so letters are joined and every gloss repeated back
  to back is collapsed, and it cleans the references too before scoring.

Scores here are computed with jiwer (see `signconsole.ctc.wer` for how its alignment can
differ from sclite's in the S/D/I split). An empty hypothesis scores as all deletions; the kit
writes an "[EMPTY]" token instead, which gives the same number of errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import groupby
from pathlib import Path

from signconsole.ctc.wer import ErrorCounts, error_counts

OFFICIAL_CONVENTION = "official kit: hypotheses cleaned per gloss, references as given"
PYTHON_PORT_CONVENTION = "python port (clean both): whole-sentence cleaning of both sides"

CORPUS_HEADER = ("id", "folder", "signer", "annotation")

# The sed rules of preprocess.sh, in the script's order (one `sed -e` per entry). Source: the
# evaluation kit shipped with phoenix2014-release (evaluation/evaluatePhoenix2014.sh); the same
# script is evaluation/slr_eval/preprocess.sh in VIPL-SLP/VAC_CSLR. The three identical
# letter-joining rules are repeated on purpose: `g` does not rescan its own output, so each pass
# joins one more letter of a run such as "A B C D".
_SED_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"loc-", ""),
        (r"cl-", ""),
        (r"qu-", ""),
        (r"poss-", ""),
        (r"lh-", ""),
        (r"S0NNE", "SONNE"),
        (r"HABEN2", "HABEN"),
        (r"__EMOTION__", ""),
        (r"__PU__", ""),
        (r"__LEFTHAND__", ""),
        (r"WIE AUSSEHEN", "WIE-AUSSEHEN"),
        (r"ZEIGEN ", "ZEIGEN-BILDSCHIRM "),
        (r"ZEIGEN$", "ZEIGEN-BILDSCHIRM"),
        (r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"),
        (r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),
        (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
        (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
        (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
        (r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),
        (r"([ +]NN) ([A-Z][ +])", r"\1+\2"),
        (r"([ +][A-Z]) (NN[ +])", r"\1+\2"),
        (r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),
        (r"([A-Z][A-Z])RAUM", r"\1"),
        (r"-PLUSPLUS", ""),
    )
)
# Then four identical perl passes collapse an all-capitals gloss repeated back to back
# (hyphenated glosses such as NICHT-VIEL are left alone by the lookarounds).
_PERL_REPEAT = re.compile(r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])")
_PERL_PASSES = 4
# Then `grep -v` drops every line that still holds one of these.
_DROPPED_MARKERS = ("__LEFTHAND__", "__EPENTHESIS__", "__EMOTION__")
_SPACES = re.compile(r" +")


def apply_kit_rules(line: str) -> str:
    """The sed and perl substitutions of preprocess.sh, in order, on one line of text.

    The kit runs them on CTM lines (one gloss each); on a whole sentence they also join spelled
    letters and collapse repeats. Lines the kit drops with grep are not dropped here: see
    `clean_hypothesis` and `clean_sentence`.
    """
    for pattern, replacement in _SED_RULES:
        line = pattern.sub(replacement, line)
    for _ in range(_PERL_PASSES):
        line = _PERL_REPEAT.sub(r"\1", line)
    return line


def clean_hypothesis(glosses: Sequence[str]) -> list[str]:
    """OFFICIAL cleaning of a hypothesis, gloss by gloss, as the kit sees it in a CTM file.

    loc-/cl-/qu-/poss-/lh- are removed, S0NNE -> SONNE, HABEN2 -> HABEN, ZEIGEN ->
    ZEIGEN-BILDSCHIRM, XXRAUM -> XX, -PLUSPLUS removed; __EMOTION__, __PU__, __LEFTHAND__ and
    __EPENTHESIS__ glosses disappear (empty lines are dropped); __ON__ and __OFF__ stay.
    """
    cleaned: list[str] = []
    for gloss in glosses:
        line = apply_kit_rules(gloss)
        if any(marker in line for marker in _DROPPED_MARKERS):
            continue  # grep -v
        # sed 's,\s*$,,' then awk keeps only rows whose 5th field (the gloss) is not empty.
        line = line.strip()
        if line:
            cleaned.append(line)
    return cleaned


def clean_sentence(glosses: Sequence[str]) -> list[str]:
    """PYTHON-PORT cleaning (signjoey `clean_phoenix_2014`): the kit's rules on the whole
    sentence, so spelled letters are joined ("S H" -> "S+H") and any gloss repeated back to
    back is collapsed. Used on both sides by `score(..., clean_references=True)`.

    The port asserts that no __LEFTHAND__/__EPENTHESIS__/__EMOTION__ survives; the raw train
    annotations can hold __EPENTHESIS__, so such glosses are dropped here instead.
    """
    sentence = " ".join(glosses).strip()
    for pattern, replacement in _SED_RULES:
        sentence = pattern.sub(replacement, sentence)
    sentence = _SPACES.sub(" ", sentence)
    for _ in range(_PERL_PASSES):
        sentence = _PERL_REPEAT.sub(r"\1", sentence)
    tokens = [
        token
        for token in sentence.split()
        if not any(marker in token for marker in _DROPPED_MARKERS)
    ]
    return [token for token, _ in groupby(tokens)]


def convention_label(clean_references: bool = False) -> str:
    """A one-line name of the scoring convention, for logs and the UI."""
    return PYTHON_PORT_CONVENTION if clean_references else OFFICIAL_CONVENTION


def score(
    references: Mapping[str, Sequence[str]],
    hypotheses: Mapping[str, Sequence[str]],
    clean_references: bool = False,
) -> ErrorCounts:
    """Corpus-level errors of `hypotheses` against `references`, both keyed by sequence id.

    Default (clean_references=False): the OFFICIAL convention, hypotheses cleaned with
    `clean_hypothesis`, references used as given. clean_references=True: the PYTHON-PORT
    convention, `clean_sentence` on both sides; it does not reproduce published numbers.

    Every reference id is scored; an id without a hypothesis counts as an empty one (all
    deletions), as the kit's mergectmstm.py does. A hypothesis id with no reference is an
    error: it usually means the wrong split.
    """
    unknown = sorted(set(hypotheses) - set(references))
    if unknown:
        raise ValueError(
            f"{len(unknown)} hypothesis id(s) have no reference, e.g. {', '.join(unknown[:3])}; "
            "are references and hypotheses from the same split?"
        )
    ids = sorted(references)
    if clean_references:
        refs = [clean_sentence(references[i]) for i in ids]
        hyps = [clean_sentence(hypotheses.get(i, ())) for i in ids]
    else:
        refs = [list(references[i]) for i in ids]
        hyps = [clean_hypothesis(hypotheses.get(i, ())) for i in ids]
    return error_counts(refs, hyps)


def _lines(path: Path) -> list[str]:
    """A text file's lines as every corpus file is read (data/corpus.py `read_lines`: UTF-8, a
    byte-order mark dropped; other bytes are one error naming the file and line). Imported
    here, not at the top: this module stays importable without numpy and torch."""
    from signconsole.data.corpus import read_lines

    return read_lines(path)


def read_corpus_csv(path: str | Path) -> list[tuple[str, str, str, list[str]]]:
    """Read a `{split}.corpus.csv`: (id, folder, signer, glosses) per line, in file order.

    The header line `id|folder|signer|annotation` is skipped when present; glosses are split on
    any run of whitespace (the files hold double spaces). A line without exactly 4
    pipe-separated fields raises ValueError naming file and line.
    """
    path = Path(path)
    rows: list[tuple[str, str, str, list[str]]] = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if number == 1 and tuple(field.strip() for field in fields) == CORPUS_HEADER:
            continue
        if len(fields) != 4:
            raise ValueError(
                f"{path}:{number}: expected 4 pipe-separated fields (id|folder|signer|annotation), "
                f"found {len(fields)}: {line[:80]!r}"
            )
        sample_id, folder, signer, annotation = fields
        if not sample_id.strip():
            raise ValueError(f"{path}:{number}: empty id")
        rows.append((sample_id.strip(), folder.strip(), signer.strip(), annotation.split()))
    return rows


def read_stm(path: str | Path) -> dict[str, list[str]]:
    """Read an STM reference file: `<id> <channel> <speaker> <start> <end> [<label>] GLOSS ...`.

    Comment lines (`;;`) and blank lines are skipped. Each id must appear once (the Phoenix STMs
    hold one segment per sequence); a short line or a repeated id raises ValueError with
    file:line.
    """
    path = Path(path)
    references: dict[str, list[str]] = {}
    lines_of: dict[str, int] = {}
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split()
        if len(fields) < 5:
            raise ValueError(
                f"{path}:{number}: expected '<id> <channel> <speaker> <start> <end> GLOSS ...', "
                f"found {len(fields)} field(s): {line[:80]!r}"
            )
        sample_id, words = fields[0], fields[5:]
        if words and words[0].startswith("<") and words[0].endswith(">"):
            words = words[1:]  # optional STM label field such as <o,f0,male>
        if sample_id in references:
            raise ValueError(
                f"{path}:{number}: id {sample_id} already used on line {lines_of[sample_id]}"
            )
        references[sample_id] = words
        lines_of[sample_id] = number
    return references


# Each gloss gets a fixed 0.1 s slot. The kit sorts CTM lines with `sort -k1,1 -k3,3`, a text
# sort of the start field, which keeps gloss order while starts stay below 10 s (100 glosses;
# Phoenix sentences have under 40).
CTM_SECONDS_PER_GLOSS = 0.1


def write_ctm(path: str | Path, hypotheses: Mapping[str, Sequence[str]]) -> None:
    """Write hypotheses as a CTM file for the kit: `<id> 1 <start> <dur> <gloss>` per gloss.

    Ids in sorted order, glosses in sentence order, times in seconds with three decimals. An
    empty hypothesis writes no line; the kit's mergectmstm.py fills in "[EMPTY]" for it.
    """
    lines: list[str] = []
    for sample_id in sorted(hypotheses):
        if not sample_id or any(character.isspace() for character in sample_id):
            raise ValueError(f"sequence id {sample_id!r} is empty or contains whitespace")
        for index, gloss in enumerate(hypotheses[sample_id]):
            if not gloss or any(character.isspace() for character in gloss):
                raise ValueError(f"{sample_id}: gloss {gloss!r} is empty or contains whitespace")
            start = index * CTM_SECONDS_PER_GLOSS
            lines.append(f"{sample_id} 1 {start:.3f} {CTM_SECONDS_PER_GLOSS:.3f} {gloss}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_ctm(path: str | Path) -> dict[str, list[str]]:
    """Read a CTM file back into id -> glosses, glosses ordered by start time (numerically)."""
    path = Path(path)
    timed: dict[str, list[tuple[float, str]]] = {}
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split()
        try:
            sample_id, _channel, start, _duration, gloss = fields[:5]
            start_seconds = float(start)
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected '<id> <channel> <start> <dur> <gloss>', "
                f"found {line[:80]!r}"
            ) from None
        timed.setdefault(sample_id, []).append((start_seconds, gloss))
    return {
        sample_id: [gloss for _, gloss in sorted(entries, key=lambda entry: entry[0])]
        for sample_id, entries in timed.items()
    }
