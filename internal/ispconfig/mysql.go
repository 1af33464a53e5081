package ispconfig

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlQuery reads every restriction with its mail user's email; a LEFT
// JOIN so that restrictions of deleted users are reported, not dropped.
const mysqlQuery = `SELECT r.restriction_id, r.mailuser_id, m.email, r.ip, r.mode, r.service
	FROM mail_user_ip_restriction r
	LEFT JOIN mail_user m ON m.mailuser_id = r.mailuser_id
	ORDER BY r.restriction_id`

// ReadMySQL reads the restriction rows from a live ISPConfig database,
// given a go-sql-driver/mysql DSN such as
// "ispconfig:secret@tcp(127.0.0.1:3306)/dbispconfig" or
// "root@unix(/run/mysqld/mysqld.sock)/dbispconfig". Without a timeout in
// the DSN, connecting gives up after 10 s. Errors name the server and the
// database, never the password. A restriction whose mailuser_id has no
// mail_user row is an error naming its restriction_id.
func ReadMySQL(ctx context.Context, dsn string) ([]Row, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql DSN: %w", err) // the driver's errors do not quote the DSN
	}
	where := fmt.Sprintf("mysql %s(%s)/%s", cfg.Net, cfg.Addr, cfg.DBName)
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()

	rows, err := db.QueryContext(ctx, mysqlQuery)
	if err != nil {
		return nil, fmt.Errorf("%s: read mail_user_ip_restriction: %w", where, err)
	}
	defer rows.Close()
	var (
		out  []Row
		errs errorList
	)
	for rows.Next() {
		var (
			id, mailuserID        int64
			email, ip, mode, serv sql.NullString
		)
		if err := rows.Scan(&id, &mailuserID, &email, &ip, &mode, &serv); err != nil {
			return nil, fmt.Errorf("%s: read mail_user_ip_restriction: %w", where, err)
		}
		row := Row{Email: email.String, IP: ip.String, Mode: mode.String, Service: serv.String, RestrictionID: id}
		if !email.Valid {
			errs.add(fmt.Errorf("%s: mailuser_id %d has no mail_user row", row.where(), mailuserID))
			continue
		}
		if len(out) >= MaxRows {
			return nil, fmt.Errorf("%s: more than %d restriction rows", where, MaxRows)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: read mail_user_ip_restriction: %w", where, err)
	}
	if err := errs.err(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return out, nil
}
