-- put: one side write (`SidePut`: a record's hash and its indexes) atomically, so a reader never
-- sees half of it. KEYS: the hash, then its indexes. ARGV: `put`'s arguments (lib_put.lua).
put(1, #KEYS, 1)
return 1
