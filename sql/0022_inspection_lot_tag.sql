-- A camera station may name the text tag that carries the lot its machine is running (e.g. press1.lot, the
-- machine's CurrentLot): an inspection that comes without a lot (a camera folder, an upload without one) takes
-- that tag's newest value at the image's time, so genealogy and the KPIs see which lot a camera's NG belongs to.

ALTER TABLE inspection_stations ADD COLUMN lot_tag text CHECK (lot_tag <> '');
COMMENT ON COLUMN inspection_stations.lot_tag IS
    'Text tag holding the lot the station''s machine runs; fills the lot of inspections that come without one';
