//! Per-parameter key derivation (the value contract, DESIGN.md §1):
//! `param_key = fold_in(PRNGKey(seed), u32_big_endian(SHA-256(fqn_utf8)[0..4]))`.

use sha2::{Digest, Sha256};

/// The `fold_in` data of a parameter: the first four bytes of SHA-256 of its FQN, big-endian.
pub fn fqn_fold_data(fqn: &str) -> u32 {
    let d = Sha256::digest(fqn.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_python_hashlib() {
        // python3 -c "import hashlib;print(hex(int.from_bytes(hashlib.sha256(b'tok_embeddings.weight').digest()[:4],'big')))"
        assert_eq!(super::fqn_fold_data("tok_embeddings.weight"), 0xc5fa8543);
        assert_eq!(super::fqn_fold_data(""), 0xe3b0c442);
    }
}
