-- A singular test that passes: no day has a revenue of zero or less.
select * from {{ ref('daily_revenue') }} where revenue <= 0
