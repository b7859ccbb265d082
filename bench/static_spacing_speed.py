"""What Kiwi's spacing costs a static model's encoding: passages per second of static models with and without
``spacing`` on the same passages in one run (issue 23; docs/BENCHMARKS.md).

    python bench/static_spacing_speed.py --model static-ko --model out/keep/final --passages 300

Passages: the first N KorQuAD paragraphs (../shared/data), or the bundled sample's when it is absent. Each model
encodes them ``--repeats`` times (best time kept), with the respacing cache emptied before every repeat, so a number
is what a corpus the process has not seen costs; ``warm`` is the same encode again with the cache full (a training
epoch, or queries repeated).
"""

from __future__ import annotations

import common


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--model", action="append", required=True, help="a static model (repeatable)")
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from koembed.data import load_retrieval_set
    from koembed.models import EncodeOptions, encode, load_model
    from koembed.models import spacing as spacing_module
    from koembed.models.static import describe_static

    source = common.KORQUAD if common.KORQUAD.is_file() else None
    corpus = list(load_retrieval_set(source).corpus.values())[: args.passages]
    options = EncodeOptions(show_progress=False)
    rows = []
    for name in args.model:
        model = load_model(name)
        encode(model, corpus[:8], options)  # loads Kiwi (about 2 s, once per process) outside the timing

        def cold(model=model) -> None:
            spacing_module._CACHE.clear()
            encode(model, corpus, options)

        seconds, _ = common.best_of(args.repeats, cold)
        warm, _ = common.best_of(args.repeats, lambda model=model: encode(model, corpus, options))
        rows.append({"model": name, "spacing": describe_static(model)["spacing"], "passages": len(corpus),
                     "chars_mean": round(sum(map(len, corpus)) / len(corpus), 1),
                     "passages_per_s": round(len(corpus) / seconds, 1), "warm_passages_per_s": round(len(corpus) / warm, 1)})
    common.print_markdown(list(rows[0]), [list(r.values()) for r in rows])
    common.save(args.out, rows)


if __name__ == "__main__":
    main()
