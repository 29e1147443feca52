-- A singular test that fails on purpose: some orders are over 90 (each row returned is a failure).
select * from {{ ref('orders') }} where amount > 90
