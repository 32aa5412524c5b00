"""Generalising customer-identifying details (services/notes/generalise.py): pure functions, no
servers."""

from __future__ import annotations

from services.notes.generalise import find_identifiers, rules


def _found(*texts: str, **kwargs: object) -> dict[str, str]:
    generalisation = find_identifiers(texts, **kwargs)  # type: ignore[arg-type]
    return {i.value: i.placeholder for i in generalisation.identifiers}


def test_people_accounts_and_addresses_become_numbered_placeholders() -> None:
    g = find_identifiers(
        [
            "Since her password change, Outlook on LAPTOP-ACC-07 asks Jane for her password.",
            "Her address jane.doe@contoso.com is in the credential; user Priya Shah sees none.",
        ]
    )
    found = {i.value: i.placeholder for i in g.identifiers}
    assert found["LAPTOP-ACC-07"] == "[computer]"
    assert found["jane.doe@contoso.com"] == "[email]"
    assert found["contoso.com"] == "[domain]"
    # A name, its parts and its e-mail's local part are one person.
    assert found["Jane"] == found["Jane Doe"] == found["Doe"] == "[user]"
    assert found["Priya Shah"] == found["Shah"] == "[user-2]"
    text = "Jane Doe (jane.doe@contoso.com) fixed LAPTOP-ACC-07; Jane's Outlook works."
    assert g.apply(text) == "[user] ([email]) fixed [computer]; [user]'s Outlook works."


def test_the_same_value_keeps_its_placeholder_and_case_does_not_matter() -> None:
    g = find_identifiers(["Restarted the spooler on PRINT-SRV01.", "PRINT-SRV01 and DC01 agree."])
    assert g.apply("print-srv01 then DC01 then PRINT-SRV01") == (
        "[computer] then [computer-2] then [computer]"
    )
    # Not inside a longer name.
    assert g.apply("DC010 and PRINT-SRV01X stay") == "DC010 and PRINT-SRV01X stay"


def test_hosts_domains_ip_addresses_shares_profiles_and_down_level_accounts() -> None:
    found = _found(
        "nslookup intranet.contoso.local 10.0.0.10 answers; 8.8.8.8 answers too.",
        r"The share \\FS01\scans and C:\Users\jdoe\AppData belong to CONTOSO\jdoe.",
        "Opened https://contoso.sharepoint.com/sites/Projects.",
    )
    assert found["intranet.contoso.local"] == "[computer]"
    assert found["contoso.local"] == "[domain]"
    assert found["10.0.0.10"] == "[ip-address]"
    assert "8.8.8.8" not in found  # a public resolver identifies nobody
    assert found["FS01"].startswith("[computer")
    assert found["jdoe"] == found["CONTOSO\\jdoe"]
    # The down-level domain and the tenant behind sharepoint.com: one value, whatever its case.
    assert {v for k, v in found.items() if k.casefold() == "contoso"} == {"[domain-2]"}


def test_ticket_numbers_the_sessions_own_reference_and_shapes() -> None:
    found = _found(
        "See ticket T20261201.0042, INC0012345 and #48213 for the history.", tickets=["HD-1042"]
    )
    assert found["HD-1042"] == "[ticket]"
    assert {found["T20261201.0042"], found["INC0012345"], found["#48213"]} == {
        "[ticket-2]",
        "[ticket-3]",
        "[ticket-4]",
    }


def test_script_parameters_name_users_and_computers_by_their_key() -> None:
    found = _found(
        "Ran the script.",
        parameters=[
            {
                "ComputerName": "ws0042",
                "Identity": "jsmith",
                "Password": "[REDACTED]",
                "Force": True,
            },
            {"User_Name": "Maria Lopez", "Mailbox": "sales@contoso.com"},
        ],
    )
    assert found["ws0042"] == "[computer]"
    assert found["jsmith"] == "[user]"
    assert found["Maria Lopez"] == "[user-2]"
    assert found["sales@contoso.com"] == "[email]"
    assert "[REDACTED]" not in found


def test_what_identifies_nobody_is_kept() -> None:
    text = (
        "Installed KB5046617 on Windows 11 (WIN11) with SMB1 off; CVE-2024-1234 is patched. "
        "spoolsv.exe read settings.json; Test-NetConnection login.microsoftonline.com works. "
        "The Wi-Fi CORP-WIFI uses WPA2 and TLS 1.2 with the Print Spooler and Group Policy. "
        r"HKLM\SOFTWARE\Policies holds EnableADAL; Outlook's cache was cleared for the team."
    )
    g = find_identifiers([text])
    assert g.identifiers == ()
    assert g.apply(text) == text


def test_rules_are_data_with_a_version() -> None:
    loaded = rules()
    assert loaded.version.startswith("generalise-")
    assert "computername" in loaded.computer_parameters
    assert "office365.com" in loaded.vendor_domains


def test_apply_any_rewrites_nested_values_and_keeps_keys() -> None:
    g = find_identifiers(["PRINT-SRV01 hangs"])
    assert g.apply_any({"ComputerName": "PRINT-SRV01", "list": ["PRINT-SRV01", 3]}) == {
        "ComputerName": "[computer]",
        "list": ["[computer]", 3],
    }
    assert g.values == frozenset({"PRINT-SRV01"})
    assert g.placeholder_of("print-srv01") == "[computer]"


def test_names_the_session_itself_knows_need_no_list_of_first_names() -> None:
    g = find_identifiers(
        [
            "Contact: Xiomara Quispe (finance) says the calendar will not open.",
            "Her mailbox is xiomara@fabrikam.com.",
            "Requester - Oluwaseun Adeyemi; the tunnel for FABRIKAM\\oadeyemi drops.",
            "Adeyemi confirmed it. Kowalczyk approved the sign-in.",
        ],
        parameters=[{"UserName": "bkowalczyk"}],
    )
    found = {i.value: i.placeholder for i in g.identifiers}
    # None of these given names is on the rules' list.
    assert not {"xiomara", "oluwaseun"} & rules().first_names
    assert found["Xiomara Quispe"] == found["Xiomara"] == found["Quispe"]
    # An account and the person it belongs to are one placeholder; three people, three.
    assert found["oadeyemi"] == found["Oluwaseun Adeyemi"] == found["Adeyemi"]
    assert found["Kowalczyk"] == found["bkowalczyk"]
    assert len({found["Xiomara"], found["Adeyemi"], found["Kowalczyk"]}) == 3
    assert g.apply("Adeyemi and Kowalczyk") == f"{found['Adeyemi']} and {found['Kowalczyk']}"


def test_a_shared_mailbox_or_a_product_is_not_taken_for_a_person() -> None:
    found = _found(
        "Scans go to info@fabrikam.com; the Info Desk and Outlook are fine.",
        "outlook@fabrikam.com forwards to the team.",
    )
    assert "Info" not in found and "Info Desk" not in found
    assert "Outlook" not in found
