//! IP networks in CIDR notation, for trusted-proxy lists.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::AnomalyConfigError;

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32`.
///
/// Host bits are cleared when the network is created, so `10.1.2.3/8` is
/// `10.0.0.0/8`. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) matches the
/// IPv4 networks that contain its IPv4 address, because dual-stack sockets
/// report IPv4 peers in that form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    address: IpAddr,
    prefix_len: u8,
}

impl IpNetwork {
    /// Creates the network of `address` with `prefix_len` leading bits.
    ///
    /// # Errors
    ///
    /// [`AnomalyConfigError::InvalidPrefixLength`] if `prefix_len` exceeds 32 for
    /// IPv4 or 128 for IPv6.
    pub fn new(address: IpAddr, prefix_len: u8) -> Result<Self, AnomalyConfigError> {
        let max = max_prefix_len(address);
        if prefix_len > max {
            return Err(AnomalyConfigError::InvalidPrefixLength { prefix_len, max });
        }

        // An IPv4-mapped network such as ::ffff:10.0.0.0/104 is stored as the
        // IPv4 network 10.0.0.0/8, so that it matches both forms of its addresses.
        let (address, prefix_len) = match address {
            IpAddr::V6(v6) if prefix_len >= 96 && v6.to_ipv4_mapped().is_some() => {
                (address.to_canonical(), prefix_len - 96)
            }
            _ => (address, prefix_len),
        };
        let max = max_prefix_len(address);
        if prefix_len > max {
            return Err(AnomalyConfigError::InvalidPrefixLength { prefix_len, max });
        }
        Ok(Self {
            address: mask(address, prefix_len),
            prefix_len,
        })
    }

    /// Returns the network address, with host bits cleared.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Returns the number of leading bits that identify the network.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Returns `true` if `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.address.is_ipv4() && mask(ip, self.prefix_len) == self.address
    }
}

impl FromStr for IpNetwork {
    type Err = AnomalyConfigError;

    /// Parses `address/prefix_len`, or a bare address as a single-host network.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || AnomalyConfigError::InvalidNetwork {
            value: value.to_owned(),
        };
        let (address, prefix_len) = match value.split_once('/') {
            Some((address, prefix_len)) => {
                let address: IpAddr = address.parse().map_err(|_| invalid())?;
                // Leading '+' and zeros are not CIDR notation, although u8 parses them.
                if prefix_len.is_empty()
                    || prefix_len.len() > 3
                    || !prefix_len.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(invalid());
                }
                let prefix_len: u8 = prefix_len.parse().map_err(|_| invalid())?;
                (address, prefix_len)
            }
            None => {
                let address: IpAddr = value.parse().map_err(|_| invalid())?;
                (address, max_prefix_len(address))
            }
        };
        Self::new(address, prefix_len)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

fn max_prefix_len(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

/// Clears every bit of `address` after the first `prefix_len`.
pub(crate) fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let network_bits = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & network_bits).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let network_bits = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & network_bits).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(value: &str) -> IpAddr {
        value.parse().unwrap()
    }

    #[test]
    fn parse_clears_host_bits() {
        let network: IpNetwork = "10.1.2.3/8".parse().unwrap();

        assert_eq!(network.to_string(), "10.0.0.0/8");
        assert!(network.contains(ip("10.255.0.1")));
        assert!(!network.contains(ip("11.0.0.1")));
    }

    #[test]
    fn bare_address_is_single_host() {
        let v4: IpNetwork = "192.0.2.1".parse().unwrap();
        let v6: IpNetwork = "2001:db8::1".parse().unwrap();

        assert_eq!(v4.prefix_len(), 32);
        assert_eq!(v6.prefix_len(), 128);
        assert!(v4.contains(ip("192.0.2.1")));
        assert!(!v4.contains(ip("192.0.2.2")));
        assert!(v6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn zero_prefix_matches_whole_family() {
        let all_v4: IpNetwork = "0.0.0.0/0".parse().unwrap();
        let all_v6: IpNetwork = "::/0".parse().unwrap();

        assert!(all_v4.contains(ip("203.0.113.9")));
        assert!(!all_v4.contains(ip("2001:db8::1")));
        assert!(all_v6.contains(ip("2001:db8::1")));
        assert!(!all_v6.contains(ip("203.0.113.9")));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_network() {
        let network: IpNetwork = "10.0.0.0/8".parse().unwrap();
        let mapped_network: IpNetwork = "::ffff:10.0.0.0/104".parse().unwrap();

        assert!(network.contains(ip("::ffff:10.9.9.9")));
        assert_eq!(mapped_network, network);
    }

    #[test]
    fn parse_rejects_junk() {
        for junk in [
            "",
            "/",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/8/8",
            " 10.0.0.0/8",
            "10.0.0.0 /8",
        ] {
            assert!(junk.parse::<IpNetwork>().is_err(), "{junk:?}");
        }
    }
}
