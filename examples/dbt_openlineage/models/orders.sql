-- 100 orders made from nothing (no seed, no source): order 7 of every ten has no numeric status code.
select
    range as order_id,
    date '2024-01-01' + cast(range % 28 as integer) as order_date,
    round(10 + (range * 37 % 900) / 10.0, 2) as amount,
    case when range % 10 = 7 then 'n/a' else cast(range % 3 as varchar) end as status_code
from range(1, 101)
