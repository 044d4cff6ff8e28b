"""Data sources: each turns files (or a generator) into :class:`InteractionData`.

Every source is a plain function usable as a Hydra ``_target_`` (see ``conf/data/``)
and takes a ``preprocess`` mapping of :class:`~data_modules.preprocessing.PreprocessConfig`
options. File-backed sources share their other options too (``max_bad_fraction``,
``cache``/``cache_dir``, ``progress``: :class:`~data_modules.sources._common.SourceOptions`)
and cache their result.
"""
from data_modules.preprocessing import DataFormatError
from data_modules.sources.movielens import movielens
from data_modules.sources.ncf_split import ncf_split
from data_modules.sources.sequence_file import sequence_file
from data_modules.sources.synthetic import synthetic
from data_modules.sources.tabular import tabular

__all__ = ["DataFormatError", "movielens", "ncf_split", "sequence_file", "synthetic", "tabular"]
