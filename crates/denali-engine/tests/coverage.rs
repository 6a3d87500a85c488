//! Every v1 form of `isa-spec/forms.txt` is implemented by the interpreter.
use denali_engine::interp::handles;

#[test]
fn every_v1_form_is_handled() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for row in denali_isa::spec::FORMS.rows() {
        if row.cells[3] != "y" {
            continue;
        }
        let Some(code) = denali_isa::validate::code_by_name(row.cells[0]) else {
            panic!("forms.txt:{}: {} is not an iced Code", row.line, row.cells[0]);
        };
        checked += 1;
        if !handles(code) {
            missing.push(row.cells[0]);
        }
    }
    assert!(checked > 0, "forms.txt lists no v1 form");
    assert!(missing.is_empty(), "v1 forms the interpreter does not handle: {missing:?}");
}

#[test]
fn excluded_forms_are_not_claimed() {
    use iced_x86::Code;
    for code in [Code::Cli, Code::Movaps_xmm_xmmm128, Code::Fld_m32fp, Code::Mov_r32_cr, Code::Retfd] {
        assert!(!handles(code), "{code:?}");
    }
}
