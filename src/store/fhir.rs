//! oauth.fhir_resource_type: the FHIR resource types a SMART `system/*.<perm>` scope
//! expands to (seeded at install; a DBA may add and remove types).

use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::pg::db::Statement;

static RESOURCE_TYPES: Statement = Statement::new(
    "SELECT name FROM oauth.fhir_resource_type ORDER BY name",
    &[],
);

/// Every resource type, by name.
pub fn resource_types(spi: &SpiClient<'_>) -> Result<Vec<String>> {
    let mut types = Vec::new();
    for row in RESOURCE_TYPES.query(spi, &[])? {
        types.extend(row.get::<String>(1)?);
    }
    Ok(types)
}
