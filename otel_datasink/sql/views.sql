-- The operators' views: the one source, in Athena's (Trino's) SQL.
--
-- otel_datasink.catalog fills in the parameters (see ViewParameters), qualifies the table and view names with
-- the Athena database, and transpiles to DuckDB with sqlglot for otel_datasink.local. Write portable Trino:
-- where the engines differ in meaning, either avoid the construct or fix it in otel_datasink.catalog (date_diff
-- and approx_percentile are rewritten there). Every view reads a bounded window of dt partitions, compared as
-- strings so Athena's partition projection prunes: the last window_days of job_runs, and the last
-- dataset_window_days of dataset_status (longer, so that a dataset that stopped updating stays in sight), up to
-- future_tolerance_days ahead of today.
--
-- Times are judged against the receiver's clock, ingested_at (set when a front door maps the row): a run's
-- event_time, start_time, end_time or logical_date, or an update's updated_at, further ahead of it than
-- future_tolerance_days (otel_datasink.schema.FUTURE_TOLERANCE_DAYS) is a broken clock or a bad value, and one
-- such row would otherwise be a job's latest run, or a dataset's latest update, for centuries (silencing every
-- alert on it). The row is kept as received, and filed under its ingested_at's date when its event_time is that
-- far ahead (otel_datasink.schema.filed_time), so it stays within the windows; but it is never a run's state nor a
-- dataset's update here, and a watermark that far ahead is never a data_as_of (its update's time is).
-- future_dated_rows lists them. Every view reads job_runs_latest or dataset_status_latest, or bounds its own
-- window, so no view holds a time further ahead than that.
--
-- A run is (job_name, run_id, attempt): orchestrators give one run id to many jobs (every task of an Airflow
-- DAG run) and keep it across retries, raising the attempt. A run's STARTED row and its terminal row share all
-- three. Between a job's runs, the later is the one that ended later, then the higher attempt (a retry ending
-- in the millisecond its failed attempt did is the later), then the later start, then the greater run_id:
-- the rows decide, never the order they were ingested in, so a replay answers as the live path did.
--
-- Idempotence: storage may hold a row twice (retries, replays, compaction overlap); every view counts a run
-- (job_name, run_id, attempt) or a dataset update (dataset, updated_at, and the span that made it: trace_id,
-- span_id) once.

-- One row per run (job_name, run_id, attempt): its latest state (a terminal state beats STARTED, the latest
-- terminal wins), with the earliest start seen for the run. event_time is the time of that latest state.
-- Future-dated rows (see the header) are left out: a run whose end came dated year 2554 is STARTED here if its
-- start came in a row of its own (the processor's, OpenLineage's START), else not here at all.
-- duration_ms is the terminal row's, or from the run's start to its end when that row has none (a producer that
-- reports a run's start and end in separate events, as OpenLineage's START and COMPLETE).
-- parent_job_name, parent_run_id, owners and inputs are the latest non-null of the run's rows (a producer may
-- tell them on its START event only, another on its end; a file written before the columns existed has none).
-- One run may be reported by several producers (an Airflow task try by Airflow's trace and by its OpenLineage
-- events, under one run_id): status, end_time and the rest are the latest state's row, start_time the earliest
-- start of any row, and what that row lacks comes from the run's other rows: dataset and records_processed the
-- latest non-null; a FAILED run's error_message, with its error_type (the two from one row, so they agree), from
-- the latest FAILED row that has a message (the trace says only the state, `failed`; OpenLineage the exception).
-- Rows of one millisecond are told apart by the value itself (the greater wins), so the answer never depends on
-- the order rows are read in; the keys are ROWs of non-null fields only (Trino compares no ROW with a NULL field).
-- attempt is 1 when a row carries none, as the span conventions say. Two terminal rows of one run in one
-- millisecond (one attempt reported twice) are told apart by their content (FAILED first, then trace and span
-- id); ingested_at only picks between copies of one row.
-- Cost: a run is mostly one terminal row (and a STARTED row), and that row is then its latest state. The rows
-- of each run are counted by grouping (cheap) and joined back; only runs with several terminal rows, or several
-- rows and none terminal, are ranked, never every row of the window (a year of 500 hourly jobs: 6.6 M rows, a
-- few hundred runs ranked; ranking every row cost most of runtime_trend's time). The counts are a GROUP BY, not
-- count(*) OVER (PARTITION BY ...): DuckDB 2.0 rewrites such a window into a self-join that reads the rows of
-- every dt, outside the window too. Athena reads the window's job_runs twice, once for the five key columns.
CREATE OR REPLACE VIEW job_runs_latest AS
WITH recent AS (
    SELECT *, coalesce(attempt, 1) AS run_attempt, CASE WHEN status = 'STARTED' THEN 0 ELSE 1 END AS is_terminal
    FROM job_runs
    WHERE
        dt >= date_format(current_date - INTERVAL '${window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
        AND NOT coalesce(
            greatest(
                event_time,
                coalesce(start_time, event_time),
                coalesce(end_time, event_time),
                coalesce(logical_date, event_time)
            ) > ingested_at + INTERVAL '${future_tolerance_days}' DAY,
            FALSE
        )
),
runs AS (
    SELECT
        job_name,
        run_id,
        run_attempt,
        count(*) AS run_rows,
        sum(is_terminal) AS terminal_rows,
        min(start_time) AS first_start_time,
        max_by(parent_job_name, CASE WHEN parent_job_name IS NOT NULL THEN event_time END) AS run_parent_job_name,
        max_by(parent_run_id, CASE WHEN parent_run_id IS NOT NULL THEN event_time END) AS run_parent_run_id,
        max_by(owners, CASE WHEN owners IS NOT NULL THEN event_time END) AS run_owners,
        max_by(inputs, CASE WHEN inputs IS NOT NULL THEN event_time END) AS run_inputs,
        max_by(dataset, CASE WHEN dataset IS NOT NULL THEN ROW(event_time, dataset) END) AS run_dataset,
        max_by(
            records_processed, CASE WHEN records_processed IS NOT NULL THEN ROW(event_time, records_processed) END
        ) AS run_records,
        max_by(
            error_type,
            CASE
                WHEN status = 'FAILED' AND error_message IS NOT NULL
                    THEN ROW(event_time, error_message, coalesce(error_type, ''))
            END
        ) AS run_error_type,
        max_by(
            error_message,
            CASE
                WHEN status = 'FAILED' AND error_message IS NOT NULL
                    THEN ROW(event_time, error_message, coalesce(error_type, ''))
            END
        ) AS run_error_message
    FROM recent
    GROUP BY job_name, run_id, run_attempt
),
counted AS (
    SELECT
        r.*,
        s.run_rows,
        s.terminal_rows,
        s.first_start_time,
        s.run_parent_job_name,
        s.run_parent_run_id,
        s.run_owners,
        s.run_inputs,
        s.run_dataset,
        s.run_records,
        s.run_error_type,
        s.run_error_message
    FROM recent AS r
    JOIN runs AS s
        ON
            r.job_name IS NOT DISTINCT FROM s.job_name
            AND r.run_id IS NOT DISTINCT FROM s.run_id
            AND r.run_attempt = s.run_attempt
),
states AS (
    SELECT *, 1 AS state_rank
    FROM counted
    WHERE run_rows = 1 OR (terminal_rows = 1 AND is_terminal = 1)
    UNION ALL
    SELECT
        *,
        row_number() OVER (
            PARTITION BY job_name, run_id, run_attempt
            ORDER BY is_terminal DESC, event_time DESC, status, trace_id, span_id, ingested_at DESC
        ) AS state_rank
    FROM counted
    WHERE run_rows > 1 AND terminal_rows <> 1
)
SELECT
    run_id,
    job_name,
    job_type,
    status,
    coalesce(dataset, run_dataset) AS dataset,
    event_time,
    first_start_time AS start_time,
    end_time,
    coalesce(duration_ms, date_diff('millisecond', first_start_time, end_time)) AS duration_ms,
    coalesce(records_processed, run_records) AS records_processed,
    CASE
        WHEN status = 'FAILED' AND error_message IS NULL THEN coalesce(run_error_type, error_type)
        ELSE error_type
    END AS error_type,
    CASE WHEN status = 'FAILED' THEN coalesce(error_message, run_error_message) ELSE error_message END AS error_message,
    run_attempt AS attempt,
    logical_date,
    run_type,
    trace_id,
    span_id,
    parent_span_id,
    service_name,
    attributes,
    ingested_at,
    run_parent_job_name AS parent_job_name,
    run_parent_run_id AS parent_run_id,
    run_owners AS owners,
    run_inputs AS inputs
FROM states
WHERE state_rank = 1;

-- One row per dataset per day (dt) of the last ${dataset_window_days} days: that day's updates summed up, as
-- dataset_status_latest merges them. last_success_at: the day's latest successful update; data_as_of: the newest
-- data the day's successful updates brought (their watermark, or the update time when they carry none, or when
-- the watermark is too far ahead of the receiver's clock: see the header; an update whose updated_at is that far
-- ahead is left out altogether); last_update_at: the day's latest update, with its status, job and run;
-- counted_at/record_count, sla_at/freshness_sla_minutes, owners_at/owners: the day's latest update carrying a
-- record count, an SLA, owners. A tie on the millisecond goes to SUCCESS, then to the greater run_id, job_name,
-- trace_id and span_id, never to ingestion time, so a replay answers as the live path did.
-- An update is one (dataset, updated_at) of one span: dataset_status has no attempt, and the span is what tells
-- apart two jobs sharing a run id, or two attempts of one run, updating a dataset in one millisecond, while
-- every copy of an update (retries, replays) comes from the same span, with the same values, so copies change
-- no answer (the latest ingested is taken). All the updates of one instant are in one day: a row is filed under
-- its updated_at's date, or its ingested_at's when updated_at is too far ahead (and then left out here).
-- Closed days are read from the rollup table dataset_status_daily (written by otel-datasink compact, the newest
-- rollup of each day), the days after the last rolled-up day from dataset_status: the compaction rolls up every
-- closed day in order (and rebuilds a day whose files changed), so the two never overlap, and a location without
-- rollups reads dataset_status alone. The boundary is a scalar: DuckDB prunes the rolled-up days' files with it.
-- Cost: hourly jobs write millions of updates a year. The instants are found by grouping (cheap), and only the
-- updates at each dataset's latest instants of a day are ranked, never every update of the window.
CREATE OR REPLACE VIEW dataset_status_days AS
WITH rolled AS (
    SELECT *, max(rolled_up_at) OVER (PARTITION BY dt) AS newest_rollup
    FROM dataset_status_daily
    WHERE
        dt >= date_format(current_date - INTERVAL '${dataset_window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
),
recent AS (
    SELECT *
    FROM dataset_status
    WHERE
        dt >= date_format(current_date - INTERVAL '${dataset_window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
        AND dt > coalesce((SELECT max(dt) FROM dataset_status_daily), '')
        AND NOT coalesce(updated_at > ingested_at + INTERVAL '${future_tolerance_days}' DAY, FALSE)
),
summary AS (
    SELECT
        dataset,
        dt,
        max(updated_at) FILTER (WHERE status = 'SUCCESS') AS last_success_at,
        max(
            CASE
                WHEN watermark > ingested_at + INTERVAL '${future_tolerance_days}' DAY THEN updated_at
                ELSE coalesce(watermark, updated_at)
            END
        ) FILTER (WHERE status = 'SUCCESS') AS data_as_of,
        max(updated_at) AS last_update_at,
        max(updated_at) FILTER (WHERE record_count IS NOT NULL) AS counted_at,
        max(updated_at) FILTER (WHERE freshness_sla_minutes IS NOT NULL) AS sla_at,
        max(updated_at) FILTER (WHERE cardinality(owners) > 0) AS owners_at,
        max_by(owners, CASE WHEN cardinality(owners) > 0 THEN updated_at END) AS owners
    FROM recent
    GROUP BY dataset, dt
),
at_latest AS (
    SELECT
        r.dataset,
        r.dt,
        r.status,
        r.job_name,
        r.run_id,
        r.updated_at = s.last_update_at AS is_last,
        CASE WHEN r.updated_at = s.counted_at THEN r.record_count END AS record_count,
        CASE WHEN r.updated_at = s.sla_at THEN r.freshness_sla_minutes END AS freshness_sla_minutes,
        r.trace_id,
        r.span_id,
        r.ingested_at
    FROM recent AS r
    JOIN summary AS s
        ON
            r.dataset = s.dataset
            AND r.dt = s.dt
            AND (r.updated_at = s.last_update_at OR r.updated_at = s.counted_at OR r.updated_at = s.sla_at)
),
ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY dataset, dt, is_last
            ORDER BY status DESC, run_id DESC, job_name DESC, trace_id DESC, span_id DESC, ingested_at DESC
        ) AS last_rank,
        row_number() OVER (
            PARTITION BY dataset, dt, record_count IS NULL
            ORDER BY status DESC, run_id DESC, job_name DESC, trace_id DESC, span_id DESC, ingested_at DESC
        ) AS counted_rank,
        row_number() OVER (
            PARTITION BY dataset, dt, freshness_sla_minutes IS NULL
            ORDER BY status DESC, run_id DESC, job_name DESC, trace_id DESC, span_id DESC, ingested_at DESC
        ) AS sla_rank
    FROM at_latest
),
latest AS (
    SELECT
        dataset,
        dt,
        max(status) FILTER (WHERE is_last AND last_rank = 1) AS last_status,
        max(job_name) FILTER (WHERE is_last AND last_rank = 1) AS last_job_name,
        max(run_id) FILTER (WHERE is_last AND last_rank = 1) AS last_run_id,
        max(record_count) FILTER (WHERE record_count IS NOT NULL AND counted_rank = 1) AS record_count,
        max(freshness_sla_minutes) FILTER (
            WHERE freshness_sla_minutes IS NOT NULL AND sla_rank = 1
        ) AS freshness_sla_minutes
    FROM ranked
    GROUP BY dataset, dt
)
SELECT
    s.dataset,
    s.dt,
    s.last_success_at,
    s.data_as_of,
    s.last_update_at,
    l.last_status,
    l.last_job_name,
    l.last_run_id,
    s.counted_at,
    l.record_count,
    s.sla_at,
    l.freshness_sla_minutes,
    s.owners_at,
    s.owners
FROM summary AS s
JOIN latest AS l ON l.dataset = s.dataset AND l.dt = s.dt
UNION ALL
SELECT
    dataset,
    dt,
    last_success_at,
    data_as_of,
    last_update_at,
    last_status,
    last_job_name,
    last_run_id,
    counted_at,
    record_count,
    sla_at,
    freshness_sla_minutes,
    owners_at,
    owners
FROM rolled
WHERE rolled_up_at = newest_rollup;

-- One row per dataset of dataset_status_days (the last ${dataset_window_days} days), its days merged: the
-- latest success, the newest data_as_of, and the latest update's last_status (also last_job_name,
-- last_run_id), record_count and freshness_sla_minutes (each of the latest update carrying one, with the tie
-- rules of dataset_status_days: one instant's updates are in one day). freshness_minutes = whole minutes from
-- data_as_of to now.
-- is_stale: no successful update in the last ${dataset_window_days} days, or freshness_minutes above the latest
-- SLA given.
-- owners are those of the latest update carrying any (the writing run's owners: alert rules select by them).
-- Cost: a few hundred rows per dataset (one per day) are merged, closed days read from their rollup.
CREATE OR REPLACE VIEW dataset_status_latest AS
WITH days AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY dataset ORDER BY last_update_at DESC) AS last_rank,
        row_number() OVER (PARTITION BY dataset ORDER BY counted_at DESC NULLS LAST) AS counted_rank,
        row_number() OVER (PARTITION BY dataset ORDER BY sla_at DESC NULLS LAST) AS sla_rank
    FROM dataset_status_days
),
measured AS (
    SELECT
        dataset,
        max(last_status) FILTER (WHERE last_rank = 1) AS last_status,
        max(last_success_at) AS last_success_at,
        max(data_as_of) AS data_as_of,
        date_diff('minute', max(data_as_of), current_timestamp) AS freshness_minutes,
        max(freshness_sla_minutes) FILTER (WHERE sla_rank = 1) AS freshness_sla_minutes,
        max(record_count) FILTER (WHERE counted_rank = 1) AS record_count,
        max(last_update_at) AS last_update_at,
        max(last_job_name) FILTER (WHERE last_rank = 1) AS last_job_name,
        max(last_run_id) FILTER (WHERE last_rank = 1) AS last_run_id,
        max_by(owners, owners_at) AS owners
    FROM days
    GROUP BY dataset
)
SELECT
    *,
    (
        last_success_at IS NULL
        OR coalesce(freshness_minutes > freshness_sla_minutes, FALSE)
    ) AS is_stale
FROM measured;

-- Per job with a failure in the window: recent_failures = FAILED runs that ended in the last ${failure_days}
-- days; current_streak = consecutive FAILED runs counting back from the latest terminal run (0 once a run
-- succeeds; runs in the order of the header: end, attempt, start, run_id); the latest failure's time and error.
CREATE OR REPLACE VIEW recurring_failures AS
WITH terminal AS (
    SELECT
        job_name,
        run_id,
        attempt,
        start_time,
        status,
        end_time,
        error_type,
        error_message,
        row_number() OVER (
            PARTITION BY job_name ORDER BY end_time DESC, attempt DESC, start_time DESC, run_id DESC
        ) AS recency
    FROM job_runs_latest
    WHERE status IN ('SUCCESS', 'FAILED')
),
failures AS (
    SELECT
        job_name,
        end_time,
        error_type,
        error_message,
        row_number() OVER (
            PARTITION BY job_name ORDER BY end_time DESC, attempt DESC, start_time DESC, run_id DESC
        ) AS failure_recency
    FROM terminal
    WHERE status = 'FAILED'
),
per_job AS (
    SELECT
        job_name,
        count(*) FILTER (
            WHERE status = 'FAILED' AND end_time >= current_timestamp - INTERVAL '${failure_days}' DAY
        ) AS recent_failures,
        count(*) FILTER (WHERE end_time >= current_timestamp - INTERVAL '${failure_days}' DAY) AS recent_runs,
        coalesce(min(recency) FILTER (WHERE status = 'SUCCESS') - 1, count(*)) AS current_streak,
        max(end_time) FILTER (WHERE status = 'SUCCESS') AS last_success_at,
        max(end_time) AS last_run_at
    FROM terminal
    GROUP BY job_name
)
SELECT
    p.job_name,
    p.current_streak,
    p.recent_failures,
    p.recent_runs,
    f.end_time AS last_failure_at,
    f.error_type AS last_error_type,
    f.error_message AS last_error_message,
    p.last_success_at,
    p.last_run_at
FROM per_job AS p
JOIN failures AS f ON f.job_name = p.job_name AND f.failure_recency = 1
WHERE p.current_streak > 0 OR p.recent_failures > 0;

-- Successful runs that ended in the last ${anomaly_lookback_days} days whose records_processed is more than
-- ${anomaly_z} standard deviations from the mean of the job's successful runs in the ${anomaly_baseline_days}
-- days before it (the run judged excluded; the other attempts of its run id are runs of their own), given at
-- least ${anomaly_min_points} such runs. Backfills are
-- judged but never part of a baseline (run_type tells them apart). Against a constant baseline (stddev 0)
-- any difference is an anomaly, with z_score NULL.
CREATE OR REPLACE VIEW volume_anomalies AS
WITH runs AS (
    SELECT run_id, attempt, job_name, run_type, start_time, end_time, records_processed
    FROM job_runs_latest
    WHERE status = 'SUCCESS' AND records_processed IS NOT NULL
),
scored AS (
    SELECT
        j.job_name,
        j.run_id,
        j.attempt,
        j.run_type,
        j.start_time,
        j.end_time,
        j.records_processed,
        count(b.run_id) AS baseline_runs,
        avg(CAST(b.records_processed AS double)) AS baseline_mean,
        stddev_samp(CAST(b.records_processed AS double)) AS baseline_stddev
    FROM runs AS j
    JOIN runs AS b
        ON b.job_name = j.job_name
        AND (b.run_id <> j.run_id OR b.attempt <> j.attempt)
        AND b.end_time < j.end_time
        AND b.end_time >= j.end_time - INTERVAL '${anomaly_baseline_days}' DAY
        AND coalesce(b.run_type, '') <> 'backfill'
    WHERE j.end_time >= current_timestamp - INTERVAL '${anomaly_lookback_days}' DAY
    GROUP BY j.job_name, j.run_id, j.attempt, j.run_type, j.start_time, j.end_time, j.records_processed
)
SELECT
    job_name,
    run_id,
    attempt,
    run_type,
    start_time,
    end_time,
    records_processed,
    baseline_runs,
    baseline_mean,
    baseline_stddev,
    CASE
        WHEN baseline_stddev > 0 THEN (records_processed - baseline_mean) / baseline_stddev
    END AS z_score,
    CASE WHEN records_processed > baseline_mean THEN 'spike' ELSE 'drop' END AS direction
FROM scored
WHERE
    baseline_runs >= ${anomaly_min_points}
    AND (
        abs(records_processed - baseline_mean) > ${anomaly_z} * baseline_stddev
        OR (baseline_stddev = 0 AND records_processed <> baseline_mean)
    );

-- Per job, per UTC day the run started (the day it ended for a run whose start no row gave) of the last
-- ${window_days} days, backfills apart (is_backfill): finished runs, failures, the p50 and p95 duration of the
-- successful ones, the longest duration, the records processed.
-- Closed days are read from the rollup table job_runs_daily (written by otel-datasink compact from the day's
-- job_runs files and the next day's: runs that end after midnight; the newest rollup of each day), the days after
-- the last rolled-up day from job_runs_latest: the compaction rolls up every closed day in order (and rebuilds a
-- day whose files changed), so the two never overlap, and a location without rollups reads job_runs alone. A day's
-- rollup sees the rows of that day and the next: a run whose rows are further apart (one that ran over a day, a
-- copy of its end reported days later) is counted as those two days' rows tell it. The day before the window,
-- which the window's rows tell only in part, is left out.
CREATE OR REPLACE VIEW runtime_trend AS
WITH rolled AS (
    SELECT *, max(rolled_up_at) OVER (PARTITION BY dt) AS newest_rollup
    FROM job_runs_daily
    WHERE
        dt >= date_format(current_date - INTERVAL '${window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
),
finished AS (
    SELECT
        *,
        CAST(coalesce(start_time, end_time) AS date) AS run_date,
        coalesce(run_type, '') = 'backfill' AS is_backfill
    FROM job_runs_latest
    WHERE status IN ('SUCCESS', 'FAILED')
)
SELECT
    job_name,
    run_date,
    is_backfill,
    count(*) AS runs,
    count(*) FILTER (WHERE status = 'FAILED') AS failures,
    approx_percentile(duration_ms, 0.5) FILTER (WHERE status = 'SUCCESS') AS p50_duration_ms,
    approx_percentile(duration_ms, 0.95) FILTER (WHERE status = 'SUCCESS') AS p95_duration_ms,
    max(duration_ms) AS max_duration_ms,
    CAST(sum(records_processed) AS bigint) AS records_processed
FROM finished
WHERE
    run_date >= current_date - INTERVAL '${window_days}' DAY
    AND CAST(run_date AS varchar) > coalesce((SELECT max(dt) FROM job_runs_daily), '')
GROUP BY job_name, run_date, is_backfill
UNION ALL
SELECT
    job_name,
    CAST(dt AS date) AS run_date,
    is_backfill,
    runs,
    failures,
    p50_duration_ms,
    p95_duration_ms,
    max_duration_ms,
    records_processed
FROM rolled
WHERE rolled_up_at = newest_rollup;

-- Runs whose latest state is STARTED for longer than max(${hung_floor_minutes} minutes, ${hung_factor} x the
-- p95 duration of the job's successful runs in the window); the floor alone when the job has no history.
-- An attempt with a higher attempt of the same job and run id seen is not hung but abandoned (its worker died
-- and the orchestrator retried): only a run id's last attempt is judged.
CREATE OR REPLACE VIEW hung_runs AS
WITH runs AS (
    SELECT *, max(attempt) OVER (PARTITION BY job_name, run_id) AS last_attempt
    FROM job_runs_latest
),
usual AS (
    SELECT job_name, approx_percentile(duration_ms, 0.95) AS p95_duration_ms
    FROM runs
    WHERE status = 'SUCCESS' AND duration_ms IS NOT NULL
    GROUP BY job_name
),
open_runs AS (
    SELECT
        r.run_id,
        r.job_name,
        r.job_type,
        r.dataset,
        r.start_time,
        r.attempt,
        r.service_name,
        r.trace_id,
        r.span_id,
        u.p95_duration_ms,
        date_diff('millisecond', r.start_time, current_timestamp) AS running_ms,
        greatest(
            ${hung_floor_minutes} * 60000.0E0,
            ${hung_factor} * coalesce(CAST(u.p95_duration_ms AS double), 0.0E0)
        ) AS threshold_ms
    FROM runs AS r
    LEFT JOIN usual AS u ON u.job_name = r.job_name
    WHERE r.status = 'STARTED' AND r.attempt = r.last_attempt
)
SELECT
    run_id,
    job_name,
    job_type,
    dataset,
    start_time,
    date_diff('minute', start_time, current_timestamp) AS running_minutes,
    threshold_ms / 60000 AS threshold_minutes,
    p95_duration_ms,
    attempt,
    service_name,
    trace_id,
    span_id
FROM open_runs
WHERE running_ms > threshold_ms;

-- One row per open incident: an incident (incident_id) of the alerts table whose latest state is FIRING. The
-- latest row is the one of the latest event_time; a RESOLVED beats a FIRING of the same millisecond (the end of
-- an incident is final), then the greater target decides, so the answer never depends on the files' order. A
-- target is told apart by details' target_id (a fingerprint of the target with its secrets; the targets column
-- holds it redacted, and two Slack webhooks redact alike), or by targets in rows without one (a doubled dollar
-- sign is one once the parameters are filled in).
-- alerts is small (one row per notification per target), so it is read over the ${dataset_window_days} days of
-- the dataset views: an incident re-notified at least that often stays in sight. last_notified_at is the latest
-- delivered notification; target_count is the targets told of it, undelivered_targets those whose latest
-- message (their last row) did not reach them (retried at the next evaluation), all_delivered that there is none.
-- Only FIRING and RESOLVED rows are states: an ACKNOWLEDGED row (otel-datasink alert ack) gives acknowledged_by
-- and acknowledged_until (its latest; null until: while the incident is open), and the FIRING rows with no target
-- that record a silence holding the incident give silenced_by and silenced_until (the latest until); the rows of
-- the silences themselves (state SILENCED, kind silence) are no incident. Whether they are still in force is
-- their time against now.
CREATE OR REPLACE VIEW alerts_open AS
WITH rows AS (
    SELECT *, coalesce(json_extract_scalar(details, '$$.target_id'), targets) AS target_id
    FROM alerts
    WHERE
        dt >= date_format(current_date - INTERVAL '${dataset_window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
),
events AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY incident_id
            ORDER BY event_time DESC, CASE WHEN state = 'RESOLVED' THEN 0 ELSE 1 END, target_id DESC
        ) AS recency,
        row_number() OVER (
            PARTITION BY incident_id, target_id
            ORDER BY event_time DESC, CASE WHEN delivered THEN 0 ELSE 1 END
        ) AS target_recency
    FROM rows
    WHERE state IN ('FIRING', 'RESOLVED')
),
per_incident AS (
    SELECT
        incident_id,
        min(opened_at) AS opened_at,
        max(notified_at) FILTER (WHERE delivered) AS last_notified_at,
        count(*) FILTER (WHERE target_recency = 1 AND targets IS NOT NULL) AS target_count,
        count(*) FILTER (
            WHERE target_recency = 1 AND targets IS NOT NULL AND NOT coalesce(delivered, FALSE)
        ) AS undelivered_targets,
        max(from_iso8601_timestamp(json_extract_scalar(details, '$$.silenced_until'))) AS silenced_until,
        max_by(
            json_extract_scalar(details, '$$.silenced_by'),
            from_iso8601_timestamp(json_extract_scalar(details, '$$.silenced_until'))
        ) AS silenced_by
    FROM events
    GROUP BY incident_id
),
acknowledgements AS (
    SELECT
        incident_id,
        max_by(json_extract_scalar(details, '$$.acknowledged_by'), event_time) AS acknowledged_by,
        max_by(json_extract_scalar(details, '$$.acknowledged_until'), event_time) AS acknowledged_until
    FROM rows
    WHERE state = 'ACKNOWLEDGED'
    GROUP BY incident_id
)
SELECT
    e.incident_id,
    e.kind,
    e.subject,
    e.severity,
    p.opened_at,
    p.last_notified_at,
    e.summary,
    e.details,
    p.target_count,
    p.undelivered_targets,
    p.undelivered_targets = 0 AS all_delivered,
    a.acknowledged_by,
    from_iso8601_timestamp(a.acknowledged_until) AS acknowledged_until,
    p.silenced_by,
    p.silenced_until
FROM events AS e
JOIN per_incident AS p ON p.incident_id = e.incident_id
LEFT JOIN acknowledgements AS a ON a.incident_id = e.incident_id
WHERE e.recency = 1 AND e.state = 'FIRING';

-- The future-dated rows of the last ${window_days} days (see the header), for the operator: rows of job_runs,
-- dataset_status and dataset_checks with a time further ahead of the receiver's clock (ingested_at) than
-- ${future_tolerance_days} day(s). They are kept as received, but no view takes them as a run's state, a
-- dataset's update or (a watermark) its data_as_of. time_column names the time furthest ahead, reported_time is
-- its value, ahead_by_minutes how far past ingested_at it is; service_name tells whose clock to mend.
CREATE OR REPLACE VIEW future_dated_rows AS
WITH runs AS (
    SELECT
        *,
        greatest(
            event_time,
            coalesce(start_time, event_time),
            coalesce(end_time, event_time),
            coalesce(logical_date, event_time)
        ) AS reported_time
    FROM job_runs
    WHERE
        dt >= date_format(current_date - INTERVAL '${window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
),
received AS (
    SELECT
        'job_runs' AS table_name,
        job_name,
        run_id,
        coalesce(attempt, 1) AS attempt,
        dataset,
        status,
        service_name,
        trace_id,
        span_id,
        CASE reported_time
            WHEN end_time THEN 'end_time'
            WHEN start_time THEN 'start_time'
            WHEN logical_date THEN 'logical_date'
            ELSE 'event_time'
        END AS time_column,
        reported_time,
        ingested_at
    FROM runs
    UNION ALL
    SELECT
        'dataset_status' AS table_name,
        job_name,
        run_id,
        CAST(NULL AS bigint) AS attempt,
        dataset,
        status,
        service_name,
        trace_id,
        span_id,
        CASE WHEN watermark > updated_at THEN 'watermark' ELSE 'updated_at' END AS time_column,
        greatest(updated_at, coalesce(watermark, updated_at)) AS reported_time,
        ingested_at
    FROM dataset_status
    WHERE
        dt >= date_format(current_date - INTERVAL '${window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
    UNION ALL
    SELECT
        'dataset_checks' AS table_name,
        job_name,
        run_id,
        coalesce(attempt, 1) AS attempt,
        dataset,
        status,
        CAST(NULL AS varchar) AS service_name,
        trace_id,
        span_id,
        CASE WHEN event_time > checked_at THEN 'event_time' ELSE 'checked_at' END AS time_column,
        greatest(checked_at, coalesce(event_time, checked_at)) AS reported_time,
        ingested_at
    FROM dataset_checks
    WHERE
        dt >= date_format(current_date - INTERVAL '${window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
)
SELECT *, date_diff('minute', ingested_at, reported_time) AS ahead_by_minutes
FROM received
WHERE reported_time > ingested_at + INTERVAL '${future_tolerance_days}' DAY;

-- One row per parent run (a pipeline or DAG run: parent_job_name, parent_run_id, as its child runs name it) with
-- the counts of its child runs (job_runs_latest: one per job, run and attempt, so a retried task counts once per
-- try) by latest state: running (STARTED), succeeded, failed; child_jobs counts the distinct jobs. A child naming
-- only a parent job or only a parent run id is grouped with the other part NULL. first_start_time and
-- last_end_time span the children; last_event_time is the latest state's time of any child.
CREATE OR REPLACE VIEW pipeline_runs AS
SELECT
    parent_job_name,
    parent_run_id,
    count(*) AS child_runs,
    count(DISTINCT job_name) AS child_jobs,
    count(*) FILTER (WHERE status = 'STARTED') AS running,
    count(*) FILTER (WHERE status = 'SUCCESS') AS succeeded,
    count(*) FILTER (WHERE status = 'FAILED') AS failed,
    min(start_time) AS first_start_time,
    max(end_time) AS last_end_time,
    max(event_time) AS last_event_time
FROM job_runs_latest
WHERE parent_job_name IS NOT NULL OR parent_run_id IS NOT NULL
GROUP BY parent_job_name, parent_run_id;

-- One row per lineage edge seen in the window of job_runs_latest: upstream_dataset (a dataset a run of job_name
-- read, from its inputs) -> job_name -> downstream_dataset (a dataset the same run wrote: its dataset column or
-- an update of dataset_status it made), last_seen = the latest end (else latest state) of such a run. A run that
-- read but wrote nothing gives an edge with downstream_dataset NULL, one that wrote without naming its inputs an
-- edge with upstream_dataset NULL, so every job that writes a dataset is here. A job reading and writing one
-- dataset (a merge into it) gives an edge from the dataset to itself: readers of this view follow edges with a
-- bound on hops. Edges are joined on (job_name, run_id), every attempt of a run together.
CREATE OR REPLACE VIEW dataset_lineage AS
WITH runs AS (
    SELECT job_name, run_id, dataset, inputs, coalesce(end_time, event_time) AS seen
    FROM job_runs_latest
),
written AS (
    SELECT job_name, run_id, dataset AS downstream_dataset
    FROM runs
    WHERE dataset IS NOT NULL
    UNION
    SELECT job_name, run_id, dataset AS downstream_dataset
    FROM dataset_status
    WHERE
        dt >= date_format(current_date - INTERVAL '${window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
        AND job_name IS NOT NULL
        AND run_id IS NOT NULL
),
read AS (
    SELECT r.job_name, r.run_id, i.upstream_dataset
    FROM runs AS r
    CROSS JOIN UNNEST(r.inputs) AS i (upstream_dataset)
),
edges AS (
    SELECT rd.upstream_dataset, r.job_name, w.downstream_dataset, r.seen
    FROM runs AS r
    LEFT JOIN read AS rd ON rd.job_name = r.job_name AND rd.run_id = r.run_id
    LEFT JOIN written AS w ON w.job_name = r.job_name AND w.run_id = r.run_id
)
SELECT upstream_dataset, job_name, downstream_dataset, max(seen) AS last_seen
FROM edges
WHERE upstream_dataset IS NOT NULL OR downstream_dataset IS NOT NULL
GROUP BY upstream_dataset, job_name, downstream_dataset;

-- The datasets of dataset_status_latest that are stale, each with its root cause: the most upstream stale dataset
-- or failing job that explains it.
-- The walk: from the stale dataset, up the edges of dataset_lineage whose both ends are stale (a fresh dataset
-- explains nothing downstream of it), at most 5 hops (a dataset further up is not looked at), each dataset at
-- its fewest hops, so cycles end and a self-edge (a merge into a dataset) is no step. A dataset reached at h hops
-- is a candidate at h hops; a job writing it (an edge with it downstream) whose current_streak in
-- recurring_failures is above 0 is a candidate at h + 1 hops (it is upstream of what it writes), the dataset
-- itself included (its own writer failing, h = 0). The candidate with the most hops wins; between equal hops a
-- failing job beats a stale dataset (it is what to mend), then the smaller dataset name, then job name.
-- root_cause_dataset: the stale dataset at the root (the one the failing job writes, for a job cause);
-- root_cause_job: the failing job, else NULL; hops: how far up the root is (0: the dataset is its own root,
-- nothing upstream stale nor a writer failing: root_cause_dataset is itself and root_cause NULL); root_cause:
-- the root in words, "raw.orders is stale", "load_raw failing 3 runs: <first line of its last error>", or
-- "raw.orders is stale: load_raw failing 3 runs: <error>" when the job's dataset is not this one.
-- In a cycle of stale datasets (none failing upstream of it) each member's root is the member farthest from it.
-- The walk is a fixed number of joins, not WITH RECURSIVE: Athena engine v3 runs that to a depth of 10 only (its
-- SELECT documentation), and DuckDB's has other limits; plain joins mean the same in both engines. Each
-- step is DISTINCT over (dataset, reached dataset), so diamonds of lineage do not multiply it.
-- Cost: only the lineage edges into stale datasets are kept (read once, for the walk and the failing writers); with
-- no stale dataset nothing is walked. DuckDB, 200 hourly jobs over 30 days, all 200 stale: 0.27 s (pinned views).
CREATE OR REPLACE VIEW stale_datasets AS
WITH stale AS (
    SELECT *
    FROM dataset_status_latest
    WHERE is_stale
),
lineage AS (
    SELECT DISTINCT l.upstream_dataset, l.job_name, l.downstream_dataset
    FROM dataset_lineage AS l
    JOIN stale AS d ON d.dataset = l.downstream_dataset
),
edges AS (
    SELECT DISTINCT l.upstream_dataset, l.downstream_dataset
    FROM lineage AS l
    JOIN stale AS u ON u.dataset = l.upstream_dataset
    WHERE l.upstream_dataset <> l.downstream_dataset
),
failing_writers AS (
    SELECT DISTINCT
        l.downstream_dataset AS dataset,
        l.job_name,
        f.current_streak,
        coalesce(
            nullif(trim(split_part(f.last_error_message, chr(10), 1)), ''), f.last_error_type
        ) AS error_line
    FROM lineage AS l
    JOIN recurring_failures AS f ON f.job_name = l.job_name
    WHERE f.current_streak > 0
),
hop0 AS (
    SELECT dataset, dataset AS node
    FROM stale
),
hop1 AS (
    SELECT DISTINCT h.dataset, e.upstream_dataset AS node
    FROM hop0 AS h
    JOIN edges AS e ON e.downstream_dataset = h.node
),
hop2 AS (
    SELECT DISTINCT h.dataset, e.upstream_dataset AS node
    FROM hop1 AS h
    JOIN edges AS e ON e.downstream_dataset = h.node
),
hop3 AS (
    SELECT DISTINCT h.dataset, e.upstream_dataset AS node
    FROM hop2 AS h
    JOIN edges AS e ON e.downstream_dataset = h.node
),
hop4 AS (
    SELECT DISTINCT h.dataset, e.upstream_dataset AS node
    FROM hop3 AS h
    JOIN edges AS e ON e.downstream_dataset = h.node
),
hop5 AS (
    SELECT DISTINCT h.dataset, e.upstream_dataset AS node
    FROM hop4 AS h
    JOIN edges AS e ON e.downstream_dataset = h.node
),
reached AS (
    SELECT dataset, node, min(hops) AS hops
    FROM (
    SELECT dataset, node, 0 AS hops FROM hop0
    UNION ALL
    SELECT dataset, node, 1 AS hops FROM hop1
    UNION ALL
    SELECT dataset, node, 2 AS hops FROM hop2
    UNION ALL
    SELECT dataset, node, 3 AS hops FROM hop3
    UNION ALL
    SELECT dataset, node, 4 AS hops FROM hop4
    UNION ALL
    SELECT dataset, node, 5 AS hops FROM hop5
    ) AS walked
    GROUP BY dataset, node
),
candidates AS (
    SELECT
        dataset,
        node AS root_cause_dataset,
        CAST(NULL AS varchar) AS root_cause_job,
        hops,
        CAST(NULL AS bigint) AS current_streak,
        CAST(NULL AS varchar) AS error_line
    FROM reached
    UNION ALL
    SELECT r.dataset, r.node, w.job_name, r.hops + 1, w.current_streak, w.error_line
    FROM reached AS r
    JOIN failing_writers AS w ON w.dataset = r.node
),
roots AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY dataset
            ORDER BY hops DESC, root_cause_job IS NULL, root_cause_dataset, root_cause_job
        ) AS root_rank
    FROM candidates
)
SELECT
    s.*,
    r.root_cause_dataset,
    r.root_cause_job,
    CASE
        WHEN r.root_cause_job IS NOT NULL THEN
            CASE WHEN r.root_cause_dataset <> s.dataset THEN r.root_cause_dataset || ' is stale: ' ELSE '' END
            || r.root_cause_job || ' failing ' || CAST(r.current_streak AS varchar)
            || CASE WHEN r.current_streak = 1 THEN ' run' ELSE ' runs' END
            || coalesce(': ' || r.error_line, '')
        WHEN r.hops > 0 THEN r.root_cause_dataset || ' is stale'
    END AS root_cause,
    r.hops
FROM stale AS s
JOIN roots AS r ON r.dataset = s.dataset AND r.root_rank = 1;

-- One row per data-quality check of a dataset (dataset, check_name): its latest result in the last
-- ${dataset_window_days} days (the window of the dataset views: a check that stopped running stays in sight).
-- A result whose checked_at (or event_time) is further ahead of the receiver's clock than
-- ${future_tolerance_days} day(s) is left out (see the header). Two results of one check in one millisecond: FAILED
-- first, then the greater run_id, job_name, trace_id and span_id, never ingestion time (copies of one result,
-- retries and replays, change no answer). Cost: only the results at each check's latest instant are ranked.
CREATE OR REPLACE VIEW dataset_checks_latest AS
WITH recent AS (
    SELECT *
    FROM dataset_checks
    WHERE
        dt >= date_format(current_date - INTERVAL '${dataset_window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
        AND NOT coalesce(
            greatest(checked_at, coalesce(event_time, checked_at))
            > ingested_at + INTERVAL '${future_tolerance_days}' DAY,
            FALSE
        )
),
latest_times AS (
    SELECT dataset, check_name, max(checked_at) AS checked_at
    FROM recent
    GROUP BY dataset, check_name
),
ranked AS (
    SELECT
        r.*,
        row_number() OVER (
            PARTITION BY r.dataset, r.check_name
            ORDER BY r.status, r.run_id DESC, r.job_name DESC, r.trace_id DESC, r.span_id DESC, r.ingested_at DESC
        ) AS check_rank
    FROM recent AS r
    JOIN latest_times AS l
        ON r.dataset = l.dataset AND r.check_name = l.check_name AND r.checked_at = l.checked_at
)
SELECT
    dataset,
    check_name,
    status,
    assertion,
    column_name,
    actual,
    expected,
    severity,
    checked_at,
    job_name,
    run_id,
    attempt,
    trace_id,
    span_id
FROM ranked
WHERE check_rank = 1;

-- The checks of dataset_checks_latest whose latest result is FAILED.
CREATE OR REPLACE VIEW failing_checks AS
SELECT *
FROM dataset_checks_latest
WHERE status = 'FAILED';

-- One row per period of an SLA (subject, kind, period_start) in the last ${dataset_window_days} days: its latest
-- verdict of sla_results. A period's first verdict is written when its deadline passes; a correction (the work done
-- late, or a replayed row showing it was done in time) is a later row, and the better verdict wins: met, then
-- met_late, then missed, then the latest evaluated (copies and two evaluators' rows change no answer).
-- verdict: met (done by the deadline), met_late (done after it: late_by_minutes says how late), missed (not done yet:
-- late_by_minutes is the whole minutes from the deadline to now). first_verdict is the period's first verdict.
CREATE OR REPLACE VIEW sla_verdicts AS
WITH recent AS (
    SELECT
        *,
        CASE WHEN met THEN 2 WHEN met_at IS NOT NULL THEN 1 ELSE 0 END AS standing
    FROM sla_results
    WHERE
        dt >= date_format(current_date - INTERVAL '${dataset_window_days}' DAY, '%Y-%m-%d')
        AND dt <= date_format(current_date + INTERVAL '${future_tolerance_days}' DAY, '%Y-%m-%d')
),
ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY subject, kind, period_start ORDER BY standing DESC, evaluated_at DESC, met_at
        ) AS verdict_rank,
        row_number() OVER (
            PARTITION BY subject, kind, period_start ORDER BY evaluated_at, standing
        ) AS first_rank
    FROM recent
)
SELECT
    l.subject,
    l.kind,
    l.period_start,
    l.deadline,
    CASE l.standing WHEN 2 THEN 'met' WHEN 1 THEN 'met_late' ELSE 'missed' END AS verdict,
    l.met,
    l.met_at,
    coalesce(l.late_by_minutes, date_diff('minute', l.deadline, current_timestamp)) AS late_by_minutes,
    l.run_id,
    l.rule,
    l.evaluated_at,
    CASE f.standing WHEN 2 THEN 'met' WHEN 1 THEN 'met_late' ELSE 'missed' END AS first_verdict,
    f.evaluated_at AS first_evaluated_at
FROM ranked AS l
JOIN ranked AS f
    ON l.subject = f.subject AND l.kind = f.kind AND l.period_start = f.period_start AND f.first_rank = 1
WHERE l.verdict_rank = 1;

-- Per SLA (subject, kind), per week (from Monday) and per month of its deadlines' UTC dates (grain 'week' or
-- 'month', starting its first day): the periods judged, how many met their deadline, met it late or missed it,
-- and attainment_pct = met / periods in percent (of the latest verdicts: sla_verdicts).
CREATE OR REPLACE VIEW sla_attainment AS
WITH grains AS (
    SELECT
        v.*,
        g.grain,
        CAST(
            CASE g.grain WHEN 'week' THEN date_trunc('week', v.deadline) ELSE date_trunc('month', v.deadline) END
            AS date
        ) AS starting
    FROM sla_verdicts AS v
    CROSS JOIN (VALUES 'week', 'month') AS g (grain)
)
SELECT
    subject,
    kind,
    grain,
    starting,
    count(*) AS periods,
    count_if(verdict = 'met') AS met,
    count_if(verdict = 'met_late') AS met_late,
    count_if(verdict = 'missed') AS missed,
    round(100.0 * count_if(verdict = 'met') / count(*), 1) AS attainment_pct
FROM grains
GROUP BY subject, kind, grain, starting;
