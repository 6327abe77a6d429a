//! A direct primary-key probe: one row found through a unique index on a uuid, read from the
//! table under a given snapshot, with no SPI and no executor. The JWT revocation check runs
//! it for every verified token (store/session.rs), where a planned statement would cost more
//! than the rest of the verification together.

use pgrx::pg_sys;
use pgrx::FromDatum;

use crate::pg::cache::Fresh;

/// The row a probe found, readable while the probe runs.
pub struct Found {
    slot: *mut pg_sys::TupleTableSlot,
}

impl Found {
    /// Whether column `attnum` (1-based, within the columns the probe deformed) is NULL.
    pub fn is_null(&self, attnum: i16) -> bool {
        // SAFETY: the probe deformed the slot up to every attnum its reader may ask for.
        unsafe { *(*self.slot).tts_isnull.add(attnum as usize - 1) }
    }

    /// Column `attnum` as bytes (a bytea), copied out; None when NULL.
    pub fn bytes(&self, attnum: i16) -> Option<Vec<u8>> {
        if self.is_null(attnum) {
            return None;
        }
        // SAFETY: as in `is_null`; the datum is a bytea of the slot's tuple, copied here.
        unsafe { Vec::<u8>::from_datum(*(*self.slot).tts_values.add(attnum as usize - 1), false) }
    }
}

/// The row of `table` whose primary key `index` (on one uuid column) equals `key`, visible
/// to `fresh`'s snapshot: `read` applied to it (columns 1..=`last` readable), or None when
/// there is none.
pub fn probe_by_uuid<T>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    key: &[u8; 16],
    fresh: &Fresh,
    last: i16,
    read: impl FnOnce(&Found) -> T,
) -> Option<T> {
    // SAFETY: the standard index-scan sequence (as in systable scans): relations opened and
    // closed with AccessShareLock, a slot of the table's type, a registered snapshot, and a
    // uuid key compared with uuid_eq; `read` copies what it keeps before the slot is dropped,
    // and everything is released before return.
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let heap = pg_sys::table_open(table, lock);
        let index = pg_sys::index_open(index, lock);
        let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
        // A uuid datum is a pointer to its 16 bytes (pg_uuid_t).
        let uuid: [u8; 16] = *key;
        pg_sys::ScanKeyInit(
            &mut scan_key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_UUID_EQ),
            pg_sys::Datum::from(uuid.as_ptr()),
        );
        // PostgreSQL 18 added an instrumentation argument (NULL: none).
        #[cfg(not(feature = "pg18"))]
        let scan = pg_sys::index_beginscan(heap, index, fresh.snapshot(), 1, 0);
        #[cfg(feature = "pg18")]
        let scan =
            pg_sys::index_beginscan(heap, index, fresh.snapshot(), std::ptr::null_mut(), 1, 0);
        pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let found =
            pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
        let result = found.then(|| {
            if i32::from(last) > i32::from((*slot).tts_nvalid) {
                pg_sys::slot_getsomeattrs_int(slot, i32::from(last));
            }
            read(&Found { slot })
        });
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::index_close(index, lock);
        pg_sys::table_close(heap, lock);
        result
    }
}
