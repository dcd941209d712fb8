-- Changeover matrix: seconds to change a machine over from one product to another (schedules from released
-- orders use the product code as the family). A missing pair means no changeover; same product is never one.

CREATE TABLE IF NOT EXISTS changeovers (
    from_product_id integer NOT NULL REFERENCES products (id),
    to_product_id   integer NOT NULL REFERENCES products (id),
    seconds         double precision NOT NULL CHECK (seconds >= 0 AND seconds <= 315360000),
    PRIMARY KEY (from_product_id, to_product_id),
    CHECK (from_product_id <> to_product_id)
);
COMMENT ON TABLE changeovers IS 'Sequence-dependent setup between products on any machine (seconds); read by schedules from released orders';
