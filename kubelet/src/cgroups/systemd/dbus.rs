//! [`SystemdBus`] over a real D-Bus connection (zbus, blocking API): systemd's private
//! socket when the kubelet runs as root, else the system bus, as go-systemd connects.
//!
//! Not exercised by the tests: the machine they run on has no systemd (a container without
//! an init system). What is sent is fixed by [`super::properties`] and the manager, both
//! tested against the recording fake; this file only marshals those calls.

use super::bus::{parse_version, SystemdBus};
use super::properties::{PropertyValue, UnitProperty};
use std::io;
use std::path::Path;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// systemd's private socket: a direct (bus-less) connection, root only.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// The system bus socket.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

const DESTINATION: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// A connection to systemd's manager object.
pub struct DbusSystemd {
    conn: zbus::blocking::Connection,
}

impl DbusSystemd {
    /// Connects to systemd: the private socket first, then the system bus. The error names
    /// both sockets and what each said.
    pub fn connect() -> io::Result<Self> {
        let private = Self::connect_private();
        let conn = match private {
            Ok(conn) => conn,
            Err(private_err) => zbus::blocking::Connection::system().map_err(|bus_err| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "cannot reach systemd over D-Bus: {PRIVATE_SOCKET}: {private_err}; \
                         {SYSTEM_BUS_SOCKET}: {bus_err}"
                    ),
                )
            })?,
        };
        Ok(DbusSystemd { conn })
    }

    fn connect_private() -> Result<zbus::blocking::Connection, String> {
        if !Path::new(PRIVATE_SOCKET).exists() {
            return Err("no such socket".into());
        }
        zbus::blocking::connection::Builder::address(format!("unix:path={PRIVATE_SOCKET}").as_str())
            .and_then(|b| b.p2p().build())
            .map_err(|e| e.to_string())
    }

    fn call<B>(&self, method: &str, body: &B) -> io::Result<zbus::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(DESTINATION), PATH, Some(MANAGER), method, body)
            .map_err(|e| to_io(method, e))
    }
}

/// Maps systemd's D-Bus errors to the kinds [`SystemdBus`] promises.
fn to_io(method: &str, e: zbus::Error) -> io::Error {
    let kind = match &e {
        zbus::Error::MethodError(name, _, _) => match name.as_str() {
            "org.freedesktop.systemd1.UnitExists" => io::ErrorKind::AlreadyExists,
            "org.freedesktop.systemd1.NoSuchUnit" => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        },
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("systemd {method}: {e}"))
}

fn to_value(v: &PropertyValue) -> Value<'_> {
    match v {
        PropertyValue::Bool(b) => Value::from(*b),
        PropertyValue::U64(n) => Value::from(*n),
        PropertyValue::Str(s) => Value::from(s.as_str()),
        PropertyValue::StrList(l) => Value::from(l.iter().map(String::as_str).collect::<Vec<_>>()),
    }
}

fn to_dbus(properties: &[UnitProperty]) -> Vec<(&str, Value<'_>)> {
    properties
        .iter()
        .map(|p| (p.name, to_value(&p.value)))
        .collect()
}

impl SystemdBus for DbusSystemd {
    fn start_transient_unit(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()> {
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let reply = self.call(
            "StartTransientUnit",
            &(name, "replace", to_dbus(properties), aux),
        )?;
        let _job: OwnedObjectPath = reply
            .body()
            .deserialize()
            .map_err(|e| to_io("StartTransientUnit", e))?;
        Ok(())
    }

    fn set_unit_properties(&self, name: &str, properties: &[UnitProperty]) -> io::Result<()> {
        self.call("SetUnitProperties", &(name, true, to_dbus(properties)))?;
        Ok(())
    }

    fn stop_unit(&self, name: &str) -> io::Result<()> {
        self.call("StopUnit", &(name, "replace"))?;
        Ok(())
    }

    fn reset_failed_unit(&self, name: &str) -> io::Result<()> {
        self.call("ResetFailedUnit", &(name,))?;
        Ok(())
    }

    fn version(&self) -> io::Result<u32> {
        let reply = self
            .conn
            .call_method(
                Some(DESTINATION),
                PATH,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(MANAGER, "Version"),
            )
            .map_err(|e| to_io("Get Version", e))?;
        let value: OwnedValue = reply
            .body()
            .deserialize()
            .map_err(|e| to_io("Get Version", e))?;
        let text: String = value
            .try_into()
            .map_err(|e: zbus::zvariant::Error| to_io("Get Version", e.into()))?;
        parse_version(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("systemd reported an unreadable Version {text:?}"),
            )
        })
    }
}
