"""The SFTP channel: per-supplier areas, the watcher that chunks completed uploads into lec.raw."""
