"""Datasets: ingest and health (``ingest``, ``health``), the on-disk format (``dataset``),
augmentation (``augment``) and the tf.data input pipeline (``pipeline``)."""
