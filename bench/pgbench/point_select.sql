-- bench/compare.sh's reference for detail: one customer row by cuRefNo, nothing computed.
-- A random loaded customer i in 1..n; its cuRefNo as bench/bench_data.py cu(i) makes it.
\set i random(1, :n)
\set cu 1000000000000000 + (:i * 912345678901) % 1000000000000000
select * from customers where space_id = :space and cu_ref_no = :cu;
