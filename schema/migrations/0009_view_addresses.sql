-- Anonymous views counted per network address (services::views): the queue consumer counts
-- at most ANONYMOUS_VIEWS_PER_ADDRESS views of one channel or video per 30-minute slot from
-- one address, whatever viewer cookies it sends, so a script that hoards signed cookies
-- cannot count one view per cookie. The address is a keyed hash; rows of past slots are
-- deleted by the view-session sweep.
CREATE TABLE view_addresses (
  scope TEXT NOT NULL,
  address TEXT NOT NULL,
  slot INTEGER NOT NULL,
  views INTEGER NOT NULL,
  PRIMARY KEY (scope, address, slot)
);
CREATE INDEX view_addresses_slot ON view_addresses (slot);
