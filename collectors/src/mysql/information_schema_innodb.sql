-- InnoDB's own view of its transactions and undo history, in one statement (the poll's statement count is a
-- budget): open transactions, those waiting on a row lock, the oldest one's age, the history list length
-- (undo not yet purged: long transactions make it grow) and deadlocks since start. INNODB_TRX and
-- INNODB_METRICS need PROCESS. A counter INNODB_METRICS has disabled (innodb_monitor_disable) reads NULL,
-- which is unknown, never 0. Same tables on MySQL 5.7-8.4 and MariaDB 10.x-11.x; MariaDB calls the on/off
-- column ENABLED (1/0), so its text is this one with the
-- two on/off filters rewritten (information_schema_innodb.rs).
SELECT
    (SELECT COUNT(*) FROM information_schema.INNODB_TRX) AS transactions,
    (SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT') AS lock_waiting,
    (SELECT COALESCE(MAX(TIMESTAMPDIFF(MICROSECOND, trx_started, NOW(6))), 0) FROM information_schema.INNODB_TRX)
        AS oldest_transaction_microseconds,
    (SELECT MAX(`COUNT`) FROM information_schema.INNODB_METRICS
        WHERE NAME = 'trx_rseg_history_len' AND STATUS = 'enabled') AS history_list_length,
    (SELECT MAX(`COUNT`) FROM information_schema.INNODB_METRICS
        WHERE NAME = 'lock_deadlocks' AND STATUS = 'enabled') AS deadlocks
