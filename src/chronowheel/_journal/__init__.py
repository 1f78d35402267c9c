"""The journal: chronowheel's file-backed durability, one implementation of ``chronowheel._store.Store``.

* ``format`` -- bytes: headers, framing, checksums, the decoder (sans-IO);
* ``records`` -- what the records say: schemas, job <-> record, replay;
* ``recovery`` -- the read-only plan: which files, which records, what to repair;
* ``writer`` -- the writer thread: files, fsync policy, rotation, snapshots, the lock;
* ``store`` -- ``JournalStore``: the Store protocol over the above; owns the live set and compaction.

The engine's parts never import this package; only the composition root
(``Engine``) builds a ``JournalStore`` when given ``journal=``.
"""
