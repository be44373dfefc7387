"""From verified samples to training sets, cards and the Hub.

- :mod:`~datagen.output.formats`: TRL key sets, Arrow schemas, the assistant turn.
- :mod:`~datagen.output.sft`, :mod:`~datagen.output.pairs`: the builders (pure).
- :mod:`~datagen.output.difficulty`: pass rates, buckets, weights, fixed-N expectations.
- :mod:`~datagen.output.tokens`: token counts for the length caps.
- :mod:`~datagen.output.subsets`: exact-size subsets and per-domain mixes.
- :mod:`~datagen.output.builders`: all three outputs at once.
- :mod:`~datagen.output.card`, :mod:`~datagen.output.publish`: cards, folders, upload.
"""
