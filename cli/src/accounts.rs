//! The first administrator on an empty database, and the demo's accounts.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use offsite_store::auth::{check_password_policy, NewUser, Role};
use offsite_store::Store;
use tracing::info;

use crate::configuration::Config;
use crate::device_cmd::write_secret;

pub const FIRST_ADMIN: &str = "admin";

/// With no users yet, creates `admin` (system and security administrator, so that it can create
/// the other accounts). Its password comes from the configuration, else the terminal, else it is
/// generated and written to a private file; never a built-in default.
pub async fn ensure_first_admin(cfg: &Config, store: &Store) -> Result<()> {
    if store.user_count().await? > 0 {
        return Ok(());
    }
    let (password, source) = match &cfg.auth.initial_admin_password {
        Some(p) => (p.clone(), "configuration".to_owned()),
        None if std::io::stdin().is_terminal() => (prompt()?, "terminal".to_owned()),
        None => {
            let p = generated();
            let file = cfg.data_dir.join("secrets").join("initial-admin.pass");
            write_secret(&file, p.as_bytes())?;
            (p, format!("generated into {}", file.display()))
        }
    };
    if let Err(e) = check_password_policy(FIRST_ADMIN, &password) {
        bail!("the first administrator's password is refused: {} / {}", e.en, e.zh);
    }
    store
        .insert_user(&NewUser {
            username: FIRST_ADMIN.into(),
            display_name: "系统管理员".into(),
            password,
            roles: vec![Role::SystemAdmin, Role::SecurityAdmin],
            department_id: None,
            region_codes: vec![],
            must_change_password: false,
        })
        .await?;
    info!(user = FIRST_ADMIN, password_from = %source, "first administrator created");
    eprintln!("first administrator `{FIRST_ADMIN}` created (password: {source}) / 已创建首个管理员账号 {FIRST_ADMIN}");
    Ok(())
}

/// The demo's password for every seeded account (never used outside the demo).
pub const DEMO_PASSWORD: &str = "Demo@2026";

/// One account per role for the demo, handlers and the leader in the seeded departments, and the
/// monitoring center's leader (monitor and leader: warnings nobody acknowledges escalate to them);
/// the first administrator keeps only the system administrator's role (separated powers).
/// Idempotent. Returns (name, main role, department).
pub async fn seed_demo_accounts(store: &Store) -> Result<Vec<(String, Role, Option<String>)>> {
    let housing = store.department_by_code("housing-construction").await?.map(|d| d.id);
    let ecology = store.department_by_code("ecology").await?.map(|d| d.id);
    let market = store.department_by_code("market").await?.map(|d| d.id);
    let approval = store.department_by_code("approval").await?.map(|d| d.id);
    let accounts: [(&str, &str, &[Role], Option<i64>); 12] = [
        (FIRST_ADMIN, "系统管理员", &[Role::SystemAdmin], None),
        ("secadmin", "安全管理员", &[Role::SecurityAdmin], None),
        ("auditor", "审计管理员", &[Role::AuditAdmin], None),
        ("monitor", "监控中心值班员", &[Role::Monitor], None),
        ("monlead", "监控中心主任", &[Role::Monitor, Role::Leader], None),
        ("handler1", "住建局承办人", &[Role::Handler], housing),
        ("handler2", "生态环境局承办人", &[Role::Handler], ecology),
        ("handler3", "市场监督管理局承办人", &[Role::Handler], market),
        ("handler4", "行政审批局承办人", &[Role::Handler], approval),
        ("leader1", "住建局负责人", &[Role::Leader], housing),
        ("reviewer", "审核人", &[Role::Reviewer], None),
        ("resup", "再监管（司法局）", &[Role::Resupervision], None),
    ];
    let mut out = Vec::new();
    for (name, display, roles, department) in accounts {
        let role = roles[0];
        match store.user_by_name(name).await? {
            Some(u) => {
                let mut have = u.roles.clone();
                let mut want = roles.to_vec();
                have.sort_by_key(|r| r.as_str());
                want.sort_by_key(|r| r.as_str());
                if have != want {
                    store.set_user_roles(u.id, roles).await?;
                }
            }
            None => {
                store
                    .insert_user(&NewUser {
                        username: name.into(),
                        display_name: display.into(),
                        password: DEMO_PASSWORD.into(),
                        roles: roles.to_vec(),
                        department_id: department,
                        region_codes: vec![],
                        must_change_password: false,
                    })
                    .await?;
            }
        }
        let dept = match department {
            Some(id) => store.department(id).await?.map(|d| d.name),
            None => None,
        };
        out.push((name.to_owned(), role, dept));
    }
    Ok(out)
}

fn prompt() -> Result<String> {
    eprintln!("No accounts yet. Choose the password of the first administrator `{FIRST_ADMIN}`.");
    eprintln!("尚无账号，请设置首个管理员 {FIRST_ADMIN} 的密码（至少 8 位，含大写、小写、数字、符号中的三类）。");
    loop {
        let a = rpassword::prompt_password("password / 密码: ").context("reading the password")?;
        if let Err(e) = check_password_policy(FIRST_ADMIN, &a) {
            eprintln!("{} / {}", e.en, e.zh);
            continue;
        }
        let b = rpassword::prompt_password("again / 再次输入: ").context("reading the password")?;
        if a == b {
            return Ok(a);
        }
        eprintln!("the two entries differ / 两次输入不一致");
    }
}

/// 20 random characters that satisfy the policy.
fn generated() -> String {
    use rand::Rng;
    const SETS: [&[u8]; 4] = [b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"abcdefghijkmnopqrstuvwxyz", b"23456789", b"@#%+=!"];
    let mut rng = rand::rng();
    let mut out: Vec<u8> = SETS.iter().map(|s| s[rng.random_range(0..s.len())]).collect();
    let all: Vec<u8> = SETS.concat();
    out.extend((0..16).map(|_| all[rng.random_range(0..all.len())]));
    // Shuffle so the class order is not predictable.
    for i in (1..out.len()).rev() {
        out.swap(i, rng.random_range(0..=i));
    }
    String::from_utf8(out).expect("ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_passwords_meet_the_policy() {
        for _ in 0..100 {
            let p = super::generated();
            assert!(offsite_store::auth::check_password_policy("admin", &p).is_ok(), "{p}");
        }
    }
}
