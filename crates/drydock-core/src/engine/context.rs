//! TEMPORARY stub, replaced by the real context module (branch h-context).
use std::collections::BTreeMap;
use std::path::PathBuf;
/// stub
#[derive(Debug, Clone)]
pub struct BuildContext { /// d
 pub dir: PathBuf, /// d
 pub dockerfile: String, /// d
 pub extra_files: Vec<(String, Vec<u8>)> }
/// stub
#[derive(Debug, thiserror::Error)]
#[error("context")]
pub enum ContextError { /// d
 Io }
impl BuildContext {
    /// stub
    pub fn digest(&self, _a: &BTreeMap<String, String>, _t: Option<&str>) -> Result<String, ContextError> { Ok("x".into()) }
    /// stub
    pub fn stream(&self) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static { futures::stream::empty() }
}
