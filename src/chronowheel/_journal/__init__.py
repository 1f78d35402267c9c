"""The journal: chronowheel's file-backed durability, one implementation of ``chronowheel._store.Store``.

* ``format`` -- bytes: headers, framing, checksums, the decoder (sans-IO);
* ``schema`` -- the record types and what each must hold, checked before replay;
* ``records`` -- what the records say: job <-> record, outcomes, replay;
* ``recovery`` -- the read-only plan: which files, which records, what to repair;
* ``files`` -- the file steps: the lock, a new log, a snapshot file;
* ``repair`` -- recovery's plan carried out before the log is appended to;
* ``writer`` -- the writer thread: group commit, fsync policy, rotation, snapshots;
* ``store`` -- ``JournalStore``: the Store protocol over the above; owns the live set and compaction.

The engine's parts never import this package; only the composition root
(``Engine``) builds a ``JournalStore`` when given ``journal=``.
"""
