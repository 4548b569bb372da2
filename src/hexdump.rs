//! Formatting bytes as colon-separated hex, the way certificate serials are usually shown.

/// Formats bytes as lower-case hex pairs joined by colons.
///
/// This is the form the Perl module's `hexdump` helper produced and the one OpenSSL
/// prints serial numbers in, so values can be compared with `openssl x509 -serial`
/// output by eye. An empty slice gives an empty string.
///
/// # Examples
///
/// ```
/// assert_eq!(sslify::hexdump(b"test"), "74:65:73:74");
/// assert_eq!(sslify::hexdump(&[0x00, 0xab]), "00:ab");
/// ```
pub fn hexdump(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    let mut out = String::with_capacity(bytes.len().saturating_mul(3));
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hexdump;

    #[test]
    fn formats_ascii_as_colon_separated_pairs() {
        assert_eq!(hexdump(b"test"), "74:65:73:74");
    }

    #[test]
    fn keeps_leading_zeros_and_handles_extremes() {
        assert_eq!(hexdump(&[0x00, 0x0f, 0xf0, 0xff]), "00:0f:f0:ff");
    }

    #[test]
    fn empty_input_gives_empty_string() {
        assert_eq!(hexdump(&[]), "");
    }

    #[test]
    fn single_byte_has_no_separator() {
        assert_eq!(hexdump(&[0x7a]), "7a");
    }
}
