//! The hash by which the file index finds a type's declaring file: 64-bit
//! FNV-1a of the type's full name. One source for the build script, which
//! writes the hashes, and for the library, which looks them up.

/// 64-bit FNV-1a of `name`.
pub(crate) fn type_name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
