/// CRC of Appendix A (NOT CRC-16/MODBUS): crc16(b"123456789") == 0x2F80, crc16(b"") == 0xFFFF.
///
/// The standard's register is shifted right by 8 and XORed with the byte before the usual
/// reflected 0xA001 rounds; that one difference makes it disagree with MODBUS on every input.
pub fn crc16(data: &[u8]) -> u16 {
    let mut reg: u16 = 0xFFFF;
    for &byte in data {
        reg = (reg >> 8) ^ u16::from(byte);
        for _ in 0..8 {
            let lsb = reg & 1;
            reg >>= 1;
            if lsb != 0 {
                reg ^= 0xA001;
            }
        }
    }
    reg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(crc16(b"123456789"), 0x2F80);
        assert_eq!(crc16(b""), 0xFFFF);
        // Differs from CRC-16/MODBUS (0x4B37 for the same input).
        assert_ne!(crc16(b"123456789"), 0x4B37);
    }
}
