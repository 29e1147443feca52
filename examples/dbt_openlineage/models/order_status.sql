-- Fails at run time, on purpose: DuckDB parses and plans this query, then cannot convert 'n/a' to an integer
-- while casting the rows (a Conversion Error), so dbt marks this model as an error and exits with status 1.
select order_id, cast(status_code as integer) as status
from {{ ref('orders') }}
