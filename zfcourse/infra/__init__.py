"""Infrastructure the methods stand on: where files go (:mod:`.paths`), the on-disk
cache (:mod:`.cache`), training checkpoints (:mod:`.checkpoint`) and the compute
device (:mod:`.device`). Nothing here knows about the paper."""
